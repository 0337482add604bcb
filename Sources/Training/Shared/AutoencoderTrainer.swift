import Foundation
import ImageIO
import Models
import Tensor

/// Settings of `AutoencoderTrainer`.
public struct AutoencoderTrainingOptions: Sendable {
    public var epochs: Double = 2
    /// Stop after this many optimiser steps (smoke tests); nil = run all epochs.
    public var maxSteps: Int? = nil
    public var batchSize = 64
    public var learningRate: Float = 2e-3
    /// Weight of the patch discriminator's generator loss (hinge; 0 = no discriminator), and the
    /// fraction of training after which it is switched on (the reconstruction settles first).
    public var adversarialWeight: Float = 0
    public var adversarialStart: Double = 0.5
    /// Train only the decoder (the encoder, hence the latent space and `latent_scale`, stay as
    /// they are): to sharpen a trained autoencoder without moving the latents generators use.
    public var decoderOnly = false
    /// Weight of the perceptual term (0 = none): for every convolution layer of a frozen
    /// classifier, the squared difference of its activations on the reconstruction and on the
    /// image, averaged over channels and summed over positions, per image, like the squared error.
    public var perceptualWeight: Float = 0
    public var seed: UInt64 = 1
    public var progress = true
    public init() {}
}

/// What autoencoder training measured.
public struct AutoencoderReport: Sendable, CustomStringConvertible {
    public var steps: Int
    public var seconds: Double
    public var finalLoss: Float
    /// Std of the encoder means over the training set (the stored `latent_scale`).
    public var latentScale: Float
    /// Test-set reconstruction from the encoder mean: mean squared error per pixel in [0, 1], and PSNR.
    public var testMSE: Double
    public var testPSNR: Double

    public var description: String {
        String(format: "autoencoder: %d steps in %.0fs, final loss %.3f, latent_scale %.4f, test MSE %.5f, PSNR %.2f dB",
               steps, seconds, finalLoss, latentScale, testMSE, testPSNR)
    }
}

/// Pixels of `images` as floats in [0, 1] (count * C * S * S).
public func floatPixels(_ images: LabeledImages) -> [Float] {
    images.pixels.map { Float($0) / 255 }
}

/// Trains the image VAE: loss = summed squared error per image + kl_weight * KL(q(z|x) || N(0, I)),
/// plus, when `adversarialWeight > 0`, a patch discriminator's hinge loss on the reconstructions
/// (Esser et al.'s VQGAN / latent-diffusion autoencoder recipe, with a fixed weight).
public enum AutoencoderTrainer {
    /// `perceptual`: the frozen network of the perceptual term (`options.perceptualWeight`); it must
    /// not be a feature network the evaluation scores with, or the loss would train towards the yardstick.
    public static func train(_ ae: ImageAutoencoder, train: LabeledImages, test: LabeledImages,
                             options: AutoencoderTrainingOptions, perceptual: Classifier? = nil,
                             onProgress: ((Int, Int) -> Void)? = nil) throws -> AutoencoderReport {
        let s = ae.config.imageSize, ch = ae.config.imageChannels, np = ae.config.pixelCount
        guard train.width == s, train.height == s, train.channels == ch else {
            throw TrainingError.invalidData("autoencoder: expects \(s)x\(s) images with \(ch) channel(s), "
                                            + "got \(train.width)x\(train.height)x\(train.channels)")
        }
        let n = train.count
        guard n >= 1 else { throw TrainingError.invalidData("autoencoder: no training images") }
        let usePerceptual = options.perceptualWeight > 0
        if usePerceptual {
            guard let p = perceptual else { throw TrainingError.invalidConfig("autoencoder: a perceptual weight needs a perceptual network") }
            guard p.config.imageSize == s, p.config.imageChannels == ch else {
                throw TrainingError.invalidConfig("autoencoder: the perceptual network takes \(p.config.imageSize)x\(p.config.imageSize)x\(p.config.imageChannels) images, the autoencoder \(s)x\(s)x\(ch)")
            }
            for q in p.parameters { q.requiresGrad = false }
        }
        let bs = min(options.batchSize, n)
        let pixels = floatPixels(train)
        var totalSteps = max(1, Int(options.epochs * Double(n) / Double(bs)))
        if let m = options.maxSteps { totalSteps = max(1, min(totalSteps, m)) }
        var rng = RandomGenerator(seed: options.seed)
        let trained = options.decoderOnly ? ae.namedParameters.filter { $0.0.hasPrefix("decoder.") }.map(\.1) : ae.parameters
        let opt = AdamW(parameters: trained, learningRate: options.learningRate, weightDecay: 0)
        let useAdv = options.adversarialWeight > 0
        var drng = RandomGenerator(seed: options.seed &+ 1)
        var dcfg = PatchDiscriminatorConfig(); dcfg.imageChannels = ch
        let disc = PatchDiscriminator(config: dcfg, rng: &drng)
        let dopt = AdamW(parameters: disc.parameters, learningRate: options.learningRate, beta1: 0.5, beta2: 0.9,
                         weightDecay: 0)
        let advFrom = Int(options.adversarialStart * Double(totalSteps)) + 1
        let schedule = WarmupCosineSchedule(peak: options.learningRate, warmupSteps: min(200, totalSteps / 10),
                                            totalSteps: totalSteps)
        let progress = ProgressReporter(label: "train autoencoder", total: totalSteps, itemsPerStep: bs,
                                        interval: 10, enabled: options.progress)
        var order = rng.permutation(n)
        var cursor = 0
        var lossAvg: Float = 0
        for step in 1...totalSteps {
            if cursor + bs > n { order = rng.permutation(n); cursor = 0 }
            let x = Tensor(zeros: [bs, ch, s, s])                        // x: (B, C, S, S)
            for b in 0..<bs {
                let src = order[cursor + b] * np
                for i in 0..<np { x.data[b * np + i] = pixels[src + i] }
            }
            cursor += bs
            let (mu, logvar) = options.decoderOnly
                ? GradMode.withDisabled { let e = ae.encodeDistribution(x); return (e.mean.detached(), e.logvar.detached()) }
                : ae.encodeDistribution(x)                              // (B, L, S/4, S/4) each
            let eps = Tensor.randn(mu.shape, rng: &rng)
            let z = mu + (logvar.scaled(0.5).exp() * eps)
            let recon = ae.decodeLogits(z).sigmoid()                    // recon: (B, C, S, S)
            let rec = (recon - x).square().sum().scaled(1 / Float(bs))
            let kl = (mu.square() + logvar.exp() - logvar).adding(-1).sum().scaled(0.5 / Float(bs))
            var loss = options.decoderOnly ? rec : rec + kl.scaled(ae.config.klWeight)
            var perc: Float = 0
            if usePerceptual, let p = perceptual {
                let target = GradMode.withDisabled { p.convActivations(x) }
                var term: Tensor?
                for (a, b) in zip(p.convActivations(recon), target) {
                    let d = (a - b).square().sum().scaled(1 / Float(bs * a.shape[1]))
                    term = term.map { $0 + d } ?? d
                }
                if let term {
                    perc = term.item
                    loss = loss + term.scaled(options.perceptualWeight)
                }
            }
            let adv = useAdv && step >= advFrom
            var gAdv: Float = 0, dLoss: Float = 0
            if adv {
                // Generator side: -D(recon), summed over patches per image like the squared error.
                let g = disc(recon).sum().scaled(-1 / Float(bs))
                gAdv = g.item
                loss = loss + g.scaled(options.adversarialWeight)
            }
            opt.zeroGrad()
            loss.backward()
            _ = clipGradNorm(trained, maxNorm: 5)
            opt.learningRate = schedule.rate(at: step)
            opt.update()
            if adv {
                // Discriminator: hinge loss, real images against the (detached) reconstructions.
                let real = disc(x), fake = disc(recon.detached())
                let d = real.scaled(-1).adding(1).relu().mean() + fake.adding(1).relu().mean()
                dLoss = d.item
                dopt.zeroGrad()
                d.backward()
                dopt.learningRate = schedule.rate(at: step)
                dopt.update()
            }
            lossAvg = step == 1 ? loss.item : 0.98 * lossAvg + 0.02 * loss.item
            progress.update(step: step, loss: lossAvg,
                            extra: (adv ? String(format: "rec %.2f kl %.1f g %.2f d %.3f", rec.item, kl.item, gAdv, dLoss)
                                        : String(format: "rec %.2f kl %.1f", rec.item, kl.item))
                                + (usePerceptual ? String(format: " perc %.2f", perc) : ""))
            onProgress?(step, totalSteps)
        }
        // latent_scale: std of the encoder means over the training set (unchanged encoder: kept).
        if !options.decoderOnly {
            ae.config.latentScale = 1
            let means = try encodeAll(ae, pixels: pixels, count: n)
            var sum = 0.0, sq = 0.0
            for v in means { sum += Double(v); sq += Double(v) * Double(v) }
            let mean = sum / Double(means.count)
            ae.config.latentScale = Float((sq / Double(means.count) - mean * mean).squareRoot())
        }
        let (mse, psnr) = try reconstructionError(ae, images: test)
        return AutoencoderReport(steps: totalSteps, seconds: progress.elapsed, finalLoss: lossAvg,
                                 latentScale: ae.config.latentScale, testMSE: mse, testPSNR: psnr)
    }

    /// Scaled latents (count * latentDim) of float pixels (count * C * S * S), in batches, no autograd.
    public static func encodeAll(_ ae: ImageAutoencoder, pixels: [Float], count: Int, batch: Int = 500) throws -> [Float] {
        let s2 = ae.config.pixelCount
        var out: [Float] = []
        out.reserveCapacity(count * ae.config.latentDim)
        try GradMode.withDisabled {
            var i = 0
            while i < count {
                let b = min(batch, count - i)
                let x = Tensor(Array(pixels[(i * s2)..<((i + b) * s2)]), shape: [b, s2])
                out.append(contentsOf: try ae.encode(x).array)
                i += b
            }
        }
        return out
    }

    /// Test reconstruction through the encoder mean: (MSE per pixel in [0,1], PSNR in dB).
    public static func reconstructionError(_ ae: ImageAutoencoder, images: LabeledImages) throws -> (Double, Double) {
        let pixels = floatPixels(images)
        let s2 = ae.config.pixelCount
        var se = 0.0
        try GradMode.withDisabled {
            var i = 0
            while i < images.count {
                let b = min(500, images.count - i)
                let x = Tensor(Array(pixels[(i * s2)..<((i + b) * s2)]), shape: [b, s2])
                let r = try ae.decode(try ae.encode(x))
                for j in 0..<(b * s2) { let e = Double(r.data[j] - x.data[j]); se += e * e }
                i += b
            }
        }
        let mse = se / Double(max(1, images.count * s2))
        return (mse, 10 * log10(1 / max(mse, 1e-12)))
    }
}
