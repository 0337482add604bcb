// The coalescer backend plugin: exports `cz_backend_entry` (Include/coalesce_backend.h).
//
// A model directory holds config.json {"backend": "coalescer", "weights": "coalescer.safetensors",
// ...} and the weights. Every entry point validates its input and turns failures into a status
// code plus a message in the host's err buffer; nothing here traps on bad input.
import CCoalesceABI
import Foundation
import Models
import Tensor

/// Per-model state behind the opaque cz_backend_model pointer.
final class CoalescerBackendModel {
    let model: CoalescerModel
    let describeJSON: UnsafeMutablePointer<CChar>

    init(model: CoalescerModel) {
        self.model = model
        let c = model.config
        let d = Describe(height: c.autoencoder.imageSize, width: c.autoencoder.imageSize,
                         channels: c.autoencoder.imageChannels, defaultSteps: c.defaultSteps,
                         maxBatch: CoalescerPlugin.maxCount,
                         classes: c.classNames.isEmpty ? Captions.classPhrases.map { $0[0] } : c.classNames)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = (try? enc.encode(d)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        describeJSON = strdup(json)!
    }

    /// The describe() JSON (Include/coalesce_backend.h).
    struct Describe: Encodable {
        var backend = "coalescer"
        var height: Int, width: Int, channels: Int
        var defaultSteps: Int
        var maxSteps = 64
        var maxBatch: Int
        var supportsGuidance = false
        var supportsAutoSteps = true
        var classes: [String]

        enum CodingKeys: String, CodingKey {
            case backend, height, width, channels, defaultSteps = "default_steps", maxSteps = "max_steps"
            case maxBatch = "max_batch", supportsGuidance = "supports_guidance"
            case supportsAutoSteps = "supports_auto_steps", classes
        }
    }

    deinit { free(describeJSON) }
}

enum CoalescerPlugin {
    static let maxCount = 65536
    static let chunk = 256

    static func writeError(_ message: String, _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) {
        guard let err, cap > 0 else { return }
        let bytes = Array(message.utf8.prefix(cap - 1))
        for (i, b) in bytes.enumerated() { err[i] = CChar(bitPattern: b) }
        err[bytes.count] = 0
    }

    static func create(_ dir: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> OpaquePointer? {
        guard let dir else { writeError("model_dir is NULL", err, cap); return nil }
        let path = String(cString: dir)
        let configPath = path + "/config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else {
            writeError("\(configPath): cannot read model config", err, cap); return nil
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            writeError("\(configPath): not a JSON object", err, cap); return nil
        }
        guard (obj["backend"] as? String) == "coalescer" else {
            writeError("\(configPath): \"backend\" is \(obj["backend"].map { "\($0)" } ?? "missing"), expected \"coalescer\"", err, cap)
            return nil
        }
        let weights = (obj["weights"] as? String) ?? "coalescer.safetensors"
        guard !weights.isEmpty, !weights.contains("/") else {
            writeError("\(configPath): \"weights\" must be a file name inside the model directory", err, cap); return nil
        }
        var defaultSteps: Int?
        if let v = obj["default_steps"] {
            guard !(v is Bool), let steps = v as? Int, (1...64).contains(steps) else {
                writeError("\(configPath): \"default_steps\" must be an integer in 1...64, got \(v)", err, cap); return nil
            }
            defaultSteps = steps
        }
        do {
            _ = BLAS.load()
            // A MiniLM text encoder is read from "minilm_dir" (relative to the model directory),
            // by default the repository's minilm directory beside the model's (models/minilm).
            let minilmDir = (obj["minilm_dir"] as? String).map { $0.hasPrefix("/") ? $0 : path + "/" + $0 }
            let model = try CoalescerModel.load(path: path + "/" + weights, minilmDirectory: minilmDir)
            model.prepareForInference()
            if let steps = defaultSteps { model.config.defaultSteps = steps }
            // Sampler settings may be overridden per model directory (no retraining needed).
            if let v = obj["renoise_levels"] {
                guard let levels = v as? [Double], levels.allSatisfy({ $0 >= 0 && $0 < 1 }) else {
                    writeError("\(configPath): \"renoise_levels\" must be a list of numbers in [0, 1)", err, cap); return nil
                }
                model.config.renoiseLevels = levels.map { Float($0) }
            }
            let m = CoalescerBackendModel(model: model)
            return OpaquePointer(Unmanaged.passRetained(m).toOpaque())
        } catch {
            writeError("\(path)/\(weights): \(error)", err, cap)
            return nil
        }
    }

    static func model(_ p: OpaquePointer?) -> CoalescerBackendModel? {
        guard let p else { return nil }
        return Unmanaged<CoalescerBackendModel>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    }

    /// Validates one request; returns (prompt, steps, count) or writes an error.
    static func parse(_ req: UnsafePointer<cz_backend_request>?, defaultSteps: Int,
                      _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> (String, CoalescerSteps, Int)? {
        guard let req else { writeError("request is NULL", err, cap); return nil }
        let r = req.pointee
        guard r.struct_size >= UInt32(MemoryLayout<cz_backend_request>.offset(of: \cz_backend_request.guidance)!) else {
            writeError("request struct_size \(r.struct_size) is too small", err, cap); return nil
        }
        guard let cPrompt = r.prompt else { writeError("prompt is NULL", err, cap); return nil }
        guard let prompt = String(validatingCString: cPrompt) else {
            writeError("prompt is not valid UTF-8", err, cap); return nil
        }
        guard r.count >= 1, Int(r.count) <= maxCount else {
            writeError("count \(r.count) must be in 1...\(maxCount)", err, cap); return nil
        }
        let steps: CoalescerSteps
        switch r.steps {
        case 0: steps = .fixed(defaultSteps)
        case -1: steps = .auto
        case 1...64: steps = .fixed(Int(r.steps))
        default: writeError("steps \(r.steps) must be 1...64, 0 (default) or -1 (auto)", err, cap); return nil
        }
        return (prompt, steps, Int(r.count))
    }

    /// Splits requests (in order) into sampler calls: consecutive requests with the same steps
    /// share a call of at most `chunk` images; a request bigger than that spans several calls.
    static func plan(_ parsed: [(String, CoalescerSteps, Int, UInt64)]) -> [(CoalescerSteps, [CoalescerSampler.Request])] {
        var calls: [(CoalescerSteps, [CoalescerSampler.Request])] = []
        var images = 0
        for (prompt, steps, count, seed) in parsed {
            var done = 0
            while done < count {
                if calls.isEmpty || calls[calls.count - 1].0 != steps || images == chunk {
                    calls.append((steps, []))
                    images = 0
                }
                let b = min(chunk - images, count - done)
                calls[calls.count - 1].1.append(.init(prompt: prompt, seed: seed &+ UInt64(done), count: b))
                images += b
                done += b
            }
        }
        return calls
    }

    static func generate(_ mp: OpaquePointer?, _ req: UnsafePointer<cz_backend_request>?,
                         _ pixels: UnsafeMutablePointer<UInt8>?, _ cap: Int,
                         _ progress: cz_backend_progress_fn?, _ user: UnsafeMutableRawPointer?,
                         _ err: UnsafeMutablePointer<CChar>?, _ errCap: Int) -> Int32 {
        generateBatch(mp, req, 1, pixels, cap, progress, user, err, errCap)
    }

    static func generateBatch(_ mp: OpaquePointer?, _ reqs: UnsafePointer<cz_backend_request>?, _ nReqs: Int32,
                              _ pixels: UnsafeMutablePointer<UInt8>?, _ cap: Int,
                              _ progress: cz_backend_progress_fn?, _ user: UnsafeMutableRawPointer?,
                              _ err: UnsafeMutablePointer<CChar>?, _ errCap: Int) -> Int32 {
        guard let m = model(mp) else { writeError("model is NULL", err, errCap); return Int32(CZ_BACKEND_INVALID_ARGUMENT.rawValue) }
        guard let reqs, nReqs >= 1 else { writeError("no requests", err, errCap); return Int32(CZ_BACKEND_INVALID_ARGUMENT.rawValue) }
        guard let pixels else { writeError("pixel buffer is NULL", err, errCap); return Int32(CZ_BACKEND_INVALID_ARGUMENT.rawValue) }
        let ae = m.model.config.autoencoder
        let side = ae.imageSize, channels = ae.imageChannels, n = ae.pixelCount
        var parsed: [(String, CoalescerSteps, Int, UInt64)] = []
        var total = 0
        for k in 0..<Int(nReqs) {
            guard let p = parse(reqs + k, defaultSteps: m.model.config.defaultSteps, err, errCap) else {
                return Int32(CZ_BACKEND_INVALID_ARGUMENT.rawValue)
            }
            parsed.append((p.0, p.1, p.2, reqs[k].seed))
            total += p.2
        }
        guard cap >= total * n else {
            writeError("pixel buffer holds \(cap) bytes, \(total * n) needed", err, errCap)
            return Int32(CZ_BACKEND_INVALID_ARGUMENT.rawValue)
        }
        // Requests with the same steps run as one batch (one network call per step for all of
        // them). Progress: one tick per step of each sampler call, over the whole call.
        let calls = plan(parsed)
        let perImageSteps: Int = { if case let .fixed(s) = parsed[0].1 { return s }; return m.model.config.autoMaxSteps }()
        let totalTicks = max(1, calls.count * perImageSteps)
        var tick = 0
        var cancelled = false
        let report: (Int, Int) -> Bool = { _, _ in
            tick += 1
            guard let progress else { return true }
            if progress(Int32(min(tick, totalTicks)), Int32(totalTicks), user) == 0 { cancelled = true; return false }
            return true
        }
        let sampler = CoalescerSampler(model: m.model)
        var offset = 0
        do {
            // The host's thread count for this call (ABI 1.2), else all cores; the daemon runs
            // one call per worker at once: share the cores between them.
            let r0 = reqs.pointee
            let wanted = r0.struct_size >= UInt32(MemoryLayout<cz_backend_request>.size) && r0.threads > 0
                ? Int(r0.threads) : Runtime.threads
            try Runtime.sharingCores { try Runtime.withThreadCap(min(wanted, Runtime.availableThreads)) {
                for (steps, requests) in calls {
                    let batch = try sampler.generate(requests, steps: steps, progress: report)
                    // Planar floats (C, H, W) per image -> interleaved bytes (H, W, C), the ABI's layout.
                    let out = pixels + offset, plane = side * side
                    for img in 0..<(batch.pixels.count / n) {
                        for ch in 0..<channels {
                            for p in 0..<plane {
                                let v = batch.pixels[img * n + ch * plane + p]
                                out[img * n + p * channels + ch] = UInt8(max(0, min(255, (v * 255).rounded())))
                            }
                        }
                    }
                    offset += batch.pixels.count
                }
            } }
        } catch {
            if cancelled { writeError("cancelled by the progress callback", err, errCap); return Int32(CZ_BACKEND_CANCELLED.rawValue) }
            writeError("coalescer generation failed: \(error)", err, errCap)
            return Int32(CZ_BACKEND_INTERNAL.rawValue)
        }
        return Int32(CZ_BACKEND_OK.rawValue)
    }

    static let vtable: UnsafeMutablePointer<cz_backend_vtable> = {
        let v = UnsafeMutablePointer<cz_backend_vtable>.allocate(capacity: 1)
        v.initialize(to: cz_backend_vtable(
            abi_major: UInt32(CZ_BACKEND_ABI_MAJOR),
            abi_minor: UInt32(CZ_BACKEND_ABI_MINOR),
            name: UnsafePointer(strdup("coalescer")),
            version: UnsafePointer(strdup("0.1.0")),
            create: { dir, err, cap in CoalescerPlugin.create(dir, err, cap) },
            describe: { mp in
                guard let m = CoalescerPlugin.model(mp) else { return nil }
                return UnsafePointer(m.describeJSON)
            },
            generate: { mp, req, px, cap, prog, user, err, errCap in
                CoalescerPlugin.generate(mp, req, px, cap, prog, user, err, errCap)
            },
            destroy: { mp in
                guard let mp else { return }
                Unmanaged<CoalescerBackendModel>.fromOpaque(UnsafeRawPointer(mp)).release()
            },
            generate_batch: { mp, reqs, n, px, cap, prog, user, err, errCap in
                CoalescerPlugin.generateBatch(mp, reqs, n, px, cap, prog, user, err, errCap)
            }))
        return v
    }()
}

/// The plugin's one exported symbol: the static vtable.
@_cdecl("cz_backend_entry")
public func czBackendEntry() -> UnsafePointer<cz_backend_vtable> {
    UnsafePointer(CoalescerPlugin.vtable)
}
