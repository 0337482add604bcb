import ArgumentParser
import Foundation
import Models
import Tensor
import Training

/// `coalesce train text-encoder`: gives a trained coalescer, latent diffusion teacher or distilled
/// student a MiniLM text encoder (a projection of the frozen sentence embedding trained against the
/// model's own trigram embeddings); everything else (autoencoder, projection, net or UNet) is
/// copied unchanged.
struct TrainTextEncoder: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "text-encoder",
        abstract: "Give a trained coalescer, latent-diffusion or distilled-unet model the MiniLM sentence encoder (projection trained in seconds; the network is kept).")

    @Option(help: "The trained model's directory (coalescer, latent-diffusion or distilled-unet; trigram text encoder).")
    var from = "models/coalescer-v1"
    @Option(help: "Output model directory (its name is the model's name).") var out = "models/coalescer-v1-minilm"
    @Option(help: "The MiniLM directory (scripts/fetch-minilm.sh).") var minilm = "models/minilm"
    @Option(help: "Optimiser steps.") var steps = 1500
    @Option(help: "Hidden width of the projection MLP.") var hidden = 256
    @Option(help: "Seed.") var seed: UInt64 = 16
    @Option(help: "Weight decay of the projection.") var weightDecay: Float = 1e-3
    @Flag(help: "Aim every caption at its class's mean trigram embedding instead of its own.") var classMeanTargets = false
    @Flag(help: "Build a retrieval encoder instead of training a projection: a prompt's embedding is the softmax(MiniLM cosine / temperature)-weighted mean of the model's own embeddings of its training captions.")
    var retrieval = false
    @Option(help: "With --retrieval: the softmax temperature (default: the one of 0.01-0.2 that reproduces the model's embeddings best with each caption's phrase left out).")
    var temperature: Float?

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0)
        _ = BLAS.load()
        let configPath = from + "/config.json"
        guard let data = FileManager.default.contents(atPath: configPath),
              let modelConfig = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ValidationError("\(configPath): cannot read a JSON object")
        }
        let backend = (modelConfig["backend"] as? String) ?? "coalescer"
        let latent = backend == "latent-diffusion" || backend == "distilled-unet"
        guard latent || backend == "coalescer" else {
            throw ValidationError("\(from) is a \(backend) model; text-encoder takes coalescer, latent-diffusion or distilled-unet")
        }
        let weightsFile = latent ? backend + ".safetensors" : "coalescer.safetensors"
        let weights = (modelConfig["weights"] as? String) ?? weightsFile
        let sourceEncoder: TextEncoder
        let save: (TextEncoder) throws -> Void
        if latent {
            let source = try LatentDiffusionModel.load(path: from + "/" + weights)
            sourceEncoder = source.textEncoder
            save = { try source.replacingTextEncoder(with: $0).save(path: out + "/" + weightsFile) }
        } else {
            let source = try CoalescerModel.load(path: from + "/" + weights)
            sourceEncoder = source.textEncoder
            save = { student in
                var config = source.config
                config.textEncoder = student.config
                try CoalescerModel(config: config, autoencoder: source.autoencoder, textEncoder: student,
                                   projection: source.projection, net: source.net).save(path: out + "/" + weightsFile)
            }
        }
        guard sourceEncoder.config.kind == .trigram else {
            throw ValidationError("\(from) already has a \(sourceEncoder.config.kind) text encoder")
        }
        if let temperature, !(temperature.isFinite && temperature > 0) {
            throw ValidationError("--temperature must be a finite number > 0 (got \(temperature))")
        }
        if temperature != nil && !retrieval { throw ValidationError("--temperature needs --retrieval") }
        let sentence = try MiniLM.shared(directory: minilm)
        let train = Captions.all(templates: Captions.trainTemplates)
        let heldOut = Captions.all(templates: Captions.heldOutTemplates).map(\.0)
        let student: TextEncoder
        let reportText: String
        let recipe: String
        if retrieval {
            // One group per class phrase, in the order Captions.all lists the captions.
            var groups: [Int] = []
            for (g, _) in Captions.classPhrases.flatMap({ $0 }).enumerated() {
                groups += Array(repeating: g, count: Captions.trainTemplates.count)
            }
            let (encoder, report) = try TextEncoderDistiller.retrieval(
                teacher: sourceEncoder, minilm: sentence, captions: train.map(\.0), classes: train.map(\.1), groups: groups,
                heldOut: heldOut, temperatures: temperature.map { [$0] } ?? TextEncoderDistiller.retrievalTemperatures)
            (student, reportText) = (encoder, report.description)
            recipe = "--retrieval" + (temperature.map { " --temperature \($0)" } ?? "")
            print(report)
            try finish(student: student, reportText: reportText, recipe: recipe,
                       what: "retrieval over \(train.count) training captions, temperature \(student.config.temperature)",
                       save: save, modelConfig: modelConfig, weightsFile: weightsFile, weights: weights, latent: latent)
            return
        }
        var options = TextEncoderDistillOptions()
        options.steps = steps
        options.hidden = hidden
        options.seed = seed
        options.weightDecay = weightDecay
        options.classMeanTargets = classMeanTargets
        let (projection, report) = try TextEncoderDistiller.distill(
            teacher: sourceEncoder, minilm: sentence,
            captions: train.map(\.0), classes: train.map(\.1), heldOut: heldOut, options: options)
        print(report)
        try finish(student: projection, reportText: report.description,
                   recipe: "--steps \(steps) --hidden \(hidden) --seed \(seed) --weight-decay \(weightDecay)\(classMeanTargets ? " --class-mean-targets" : "")",
                   what: "MLP \(projection.config.minilmWidth)-\(hidden)-\(projection.config.dim), \(projection.parameterCount) parameters",
                   save: save, modelConfig: modelConfig, weightsFile: weightsFile, weights: weights, latent: latent)
    }

    /// Writes the model with its new text encoder, its config.json and training-report.txt.
    func finish(student: TextEncoder, reportText: String, recipe: String, what: String, save: (TextEncoder) throws -> Void,
                modelConfig: [String: Any], weightsFile: String, weights: String, latent: Bool) throws {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try save(student)
        var modelConfig = modelConfig
        modelConfig["weights"] = weightsFile
        let json = try JSONSerialization.data(withJSONObject: modelConfig, options: [.sortedKeys])
        try json.write(to: URL(fileURLWithPath: out + "/config.json"))
        let text = """
            \(out): \(from) with the MiniLM text encoder (coalesce train text-encoder --from \(from) --out \(out) \(recipe))
            \(latent ? "autoencoder and UNet" : "autoencoder, latent projection and net") copied from \(from)/\(weights); text encoder: all-MiniLM-L6-v2 \
            (frozen, \(minilm)) -> \(what)
            \(reportText)

            """
        try text.write(toFile: out + "/training-report.txt", atomically: true, encoding: .utf8)
        print("wrote \(out)/\(weightsFile), config.json, training-report.txt")
    }
}
