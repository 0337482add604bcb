import Foundation
import Models
import Tensor
import XCTest

/// `UNet.prepareForInference()`: the forward pass on packed weights gives the same bits as the
/// one that packs on every call, and an image's output depends neither on the images beside it
/// nor on the thread count.
final class UNetTests: XCTestCase {
    /// A small UNet with every kind of layer the bundled ones have (strided and 1x1
    /// convolutions, self- and cross-attention, a condition, linear layers on either side of
    /// `RowGEMM.dotMinK` inputs), every parameter random (a fresh network starts with zero output
    /// projections, which would hide them).
    func randomUNet() throws -> UNet {
        var c = UNetConfig()
        (c.inChannels, c.outChannels, c.channels, c.layersPerLevel) = (3, 3, [32, 128], 1)
        (c.attentionLevels, c.heads, c.groups, c.condDim, c.contextDim) = ([false, true], 4, 8, 8, 8)
        var rng = RandomGenerator(seed: 11)
        let net = try UNet(c, rng: &rng)
        for p in net.parameters {
            let r = Tensor.uniform(p.shape, lo: -0.3, hi: 0.3, rng: &rng)
            p.data.update(from: r.data, count: p.count)
        }
        return net
    }

    func testPreparedForwardGivesTheSameBitsAtAnyBatchAndThreadCount() throws {
        let net = try randomUNet()
        var rng = RandomGenerator(seed: 12)
        let b = 3
        let x = Tensor.randn([b, 3, 7, 7], rng: &rng)                  // x: (B, C, 7, 7), odd size as the latents
        let cond = Tensor.randn([b, 8], rng: &rng)                      // cond: (B, 8)
        let t: [Float] = [999, 500, 3]
        let run = { (x: Tensor, t: [Float], cond: Tensor) -> [Float] in
            GradMode.withDisabled { net(x, t: t, cond: cond, context: cond.reshaped([cond.shape[0], 1, 8])).array }
        }
        let unpacked = run(x, t, cond)
        net.prepareForInference()
        XCTAssertEqual(run(x, t, cond), unpacked, "packed weights change the output")
        let per = 3 * 7 * 7
        for threads in [1, 2] {
            for i in 0..<b {
                let xi = Tensor(Array(x.array[(i * per)..<((i + 1) * per)]), shape: [1, 3, 7, 7])
                let ci = Tensor(Array(cond.array[(i * 8)..<((i + 1) * 8)]), shape: [1, 8])
                let one = Runtime.withThreadCap(threads) { run(xi, [t[i]], ci) }
                XCTAssertEqual(one, Array(unpacked[(i * per)..<((i + 1) * per)]), "image \(i) alone, \(threads) thread(s)")
            }
        }
        // The batch cut into one chunk per thread, each run whole on its thread: the same bits.
        for batch in [2, 3] {
            let chunked = Runtime.withThreadCap(2) {
                GradMode.withDisabled {
                    BatchChunks.map(batch: batch) { rows in
                        let c = cond.slice(rows)
                        return [net(x.slice(rows), t: Array(t[rows]), cond: c, context: c.reshaped([rows.count, 1, 8])), c]
                    }
                }
            }
            XCTAssertEqual(chunked[0].shape, [batch, 3, 7, 7])
            XCTAssertEqual(chunked[0].array, Array(unpacked[0..<(batch * per)]), "batch \(batch) in chunks")
            XCTAssertEqual(chunked[1].array, Array(cond.array[0..<(batch * 8)]), "second output, batch \(batch)")
        }
        // Training ignores the packs: with gradients on, the layers read the weights as they are
        // (through other kernels, so equal to float rounding only).
        net.parameters[0].data[0] += 1                                 // conv_in's weight
        let recorded = net(x, t: t, cond: cond, context: cond.reshaped([b, 1, 8])).array
        net.prepareForInference()
        let repacked = run(x, t, cond)
        XCTAssertGreaterThan(zip(repacked, unpacked).map { abs($0 - $1) }.max() ?? 0, 1e-2, "the weight change shows")
        XCTAssertLessThan(zip(recorded, repacked).map { abs($0 - $1) }.max() ?? 1, 1e-3,
                          "the forward pass with gradients on used a stale pack")
    }
}
