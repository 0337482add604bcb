import Foundation
import Models
import Tensor

/// The resumable state of a diffusion training run (teacher, student or nested UNet): the
/// trained network's weights, its EMA copy, the AdamW moments and the step, in one safetensors
/// file written atomically (temporary file, then rename). A killed run started again with the
/// same command continues from the last checkpoint; per-step randomness is derived from
/// (seed, step), so the continued run draws what the uninterrupted one would have.
public struct DiffusionCheckpoint {
    /// `elapsed`: training seconds so far (a resumed run adds its own to it); `extra`: more
    /// metadata entries for the caller.
    public static func save(path: String, net: Layer, ema: EMA, optimizer: AdamW, step: Int, phase: String, elapsed: Double = 0,
                            extra: [String: String] = [:]) throws {
        var tensors: [String: Tensor] = [:]
        for (k, p) in net.namedParameters { tensors["net." + k] = p }
        for ((k, _), s) in zip(net.namedParameters, ema.shadow) { tensors["ema." + k] = s }
        let st = optimizer.exportState()
        for (i, (m, v)) in zip(st.m, st.v).enumerated() {
            tensors["adam.m.\(i)"] = m; tensors["adam.v.\(i)"] = v
        }
        let meta = ["step": String(step), "adam_step": String(st.step), "phase": phase, "ema_updates": String(ema.updates),
                    "elapsed_seconds": String(format: "%.1f", elapsed)].merging(extra) { a, _ in a }
        let tmp = path + ".tmp"
        try SafeTensors(tensors: tensors, metadata: meta).write(path: tmp)
        guard rename(tmp, path) == 0 else { throw TrainingError.invalidData("cannot rename \(tmp) to \(path)") }
    }

    /// Loads a checkpoint into `net`, `ema` and `optimizer`; returns (step, phase, elapsed
    /// seconds, every metadata entry, the caller's `extra` ones included), or nil if there is no
    /// file at `path`.
    public static func load(path: String, net: Layer, ema: EMA, optimizer: AdamW) throws
        -> (step: Int, phase: String, elapsed: Double, metadata: [String: String])? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let st = try SafeTensors.read(path: path)
        var all: [String: Tensor] = [:]
        for name in st.names { all[name] = try st.tensor(name) }
        try net.load(from: all, prefix: "net.")
        let shadow = EMAShadow(names: net.namedParameters.map(\.0), ema: ema)
        try shadow.load(from: all, prefix: "ema.")
        let n = net.parameters.count
        var m: [Tensor] = [], v: [Tensor] = []
        for i in 0..<n {
            guard let mi = all["adam.m.\(i)"], let vi = all["adam.v.\(i)"] else {
                throw TrainingError.invalidData("\(path): optimizer state for parameter \(i) missing")
            }
            m.append(mi); v.append(vi)
        }
        let meta = st.metadata
        guard let step = meta["step"].flatMap(Int.init), let adamStep = meta["adam_step"].flatMap(Int.init) else {
            throw TrainingError.invalidData("\(path): no step in the metadata")
        }
        try optimizer.restoreState(step: adamStep, m: m, v: v)
        ema.restoreUpdates(meta["ema_updates"].flatMap(Int.init) ?? step)
        return (step, meta["phase"] ?? "", meta["elapsed_seconds"].flatMap(Double.init) ?? 0, meta)
    }
}

/// The EMA's shadow tensors under the network's parameter names (for loading).
private final class EMAShadow: Layer {
    let namedParameters: [(String, Tensor)]
    init(names: [String], ema: EMA) { namedParameters = Array(zip(names, ema.shadow)) }
}

extension EMA {
    /// Runs `body` with the EMA weights in `parameters`, then puts the live weights back.
    public func withAveraged<R>(_ parameters: [Tensor], _ body: () throws -> R) rethrows -> R {
        let live = parameters.map { $0.detached() }
        copy(into: parameters)
        defer { for (p, l) in zip(parameters, live) { p.copyValues(from: l) } }
        return try body()
    }
}
