import ArgumentParser
import Foundation
import Engine
import Tensor

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print versions, the BLAS core and threads, CPU features and the models found (with their parameter counts).")

    @Option(help: "Models directory to list.") var modelsDir = "models"
    @Option(help: "Stored `make bench` rows shown beside each model (its row at its default steps).") var benchResults = "bench/results"
    @Flag(help: "Print the same as JSON.") var json = false

    func run() throws {
        let loadError = BLAS.load()
        let models = ModelRepository(root: modelsDir).modelNames().map { InfoModel(name: $0, modelsDirectory: modelsDir, benchResults: benchResults) }
        if json {
            let report = InfoReport(
                version: CoalesceVersion.string, cpuFeatures: BLAS.cpuFeatures, blasCore: BLAS.coreName,
                blasCoreSource: BLAS.coreSource, blasThreads: BLAS.threads, computeThreads: Runtime.threads,
                cores: ProcessInfo.processInfo.activeProcessorCount, directKernels: Tensor.directKernelISA,
                blasLoadError: loadError, models: models)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        print("coalesce \(CoalesceVersion.string)")
        print("cpu features:   \(BLAS.cpuFeatures)")
        print("blas core:      \(BLAS.coreName) (training and evaluation only; chosen by: \(BLAS.coreSource); preferred for this CPU: \(BLAS.preferredCore.isEmpty ? "none" : BLAS.preferredCore))")
        print("blas threads:   \(BLAS.threads)\(BLAS.threads == 1 ? " (products are split over the compute threads)" : "")")
        print("blas config:    \(BLAS.config)")
        print("compute threads: \(Runtime.threads)")
        print("kernels:        \(Tensor.directKernelISA) (every product and convolution of generation, SiLU, group norm; avx512 and avx2 give the same bits; COALESCE_ISA=avx2 forces avx2; \(Conv2dPath.current))")
        if let loadError { print("warning: OpenBLAS not loaded, using slow fallback: \(loadError)") }
        print("models in \(modelsDir): \(models.isEmpty ? "none" : "")")
        for m in models {
            if let error = m.error {
                print("  \(m.name)  (unreadable: \(error))")
            } else if let total = m.parameters {
                let groups = m.parameterGroups.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }
                print("  \(m.name)  (backend: \(m.backend ?? "?"); \(total) parameters in \(m.weights ?? "?"): \(groups.joined(separator: ", ")))")
            } else {
                print("  \(m.name)  (backend: \(m.backend ?? "?"))")
            }
            guard m.error == nil else { continue }
            var use: [String] = []
            if let s = m.defaultSteps { use.append("default \(s) step\(s == 1 ? "" : "s")") }
            use.append(m.defaultGuidance.map { g in
                String(format: "guidance %g", g) + (m.guidanceInterval.map { String(format: " at noise fractions %g-%g only", $0[0], $0[1]) } ?? "")
            } ?? "no guidance")
            if let t = m.textEncoder { use.append("text encoder: \(t)") }
            print("      " + use.joined(separator: ", "))
            if let b = m.bench {
                var row = String(format: "      make bench (%d images, %d steps): FID %.2f (real images %.2f), class accuracy %.1f%%",
                                 b.count, b.steps, b.fid, b.realFID ?? .nan, b.classAccuracy * 100)
                if let ips = b.imagesPerSecond { row += String(format: ", %.0f images/s at batch 64", ips) }
                if let l = b.latencyMs { row += String(format: ", %.2f ms per image at batch 1", l) }
                print(row)
            }
        }
    }
}

/// One model of `coalesce info`: its backend and the parameters (tensor elements) of the weights
/// file its config.json names, per top-level tensor name.
struct InfoModel: Encodable {
    var name: String
    var backend: String?
    var weights: String?
    var parameters: Int?
    var parameterGroups: [String: Int] = [:]
    /// Steps a request gets when it asks for the default (config.json, else the weights' config).
    var defaultSteps: Int?
    /// Guidance scale a request gets by default; nil where the model takes no guidance.
    var defaultGuidance: Double?
    /// The band of noise fractions t / (T - 1) where guidance applies ([lo, hi]); nil: every step.
    var guidanceInterval: [Double]?
    /// "trigram" (the hashed word + trigram encoder), "minilm" (a projection of MiniLM sentence
    /// embeddings) or "minilm_retrieval" (MiniLM attention over the training captions).
    var textEncoder: String?
    /// The stored `make bench` row at the default steps, if there is one.
    var bench: InfoBenchRow?
    var error: String?

    enum CodingKeys: String, CodingKey {
        case name, backend, weights, parameters, error, bench
        case parameterGroups = "parameter_groups", defaultSteps = "default_steps"
        case defaultGuidance = "default_guidance", textEncoder = "text_encoder", guidanceInterval = "guidance_interval"
    }

    init(name: String, modelsDirectory: String, benchResults: String = "bench/results") {
        self.name = name
        let repo = ModelRepository(root: modelsDirectory)
        do {
            let config = try repo.config(for: name)
            backend = config.backend
            weights = config.weights
            let dir = try repo.directory(for: name)
            let raw = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json")))) as? [String: Any] ?? [:]
            var stored: [String: Any] = [:]
            if let w = config.weights {
                let st = try SafeTensors.read(path: dir + "/" + w)
                parameterGroups = st.parameterCounts
                parameters = parameterGroups.values.reduce(0, +)
                stored = st.config.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] } ?? [:]
            }
            defaultSteps = config.defaultSteps ?? (stored["default_steps"] as? NSNumber)?.intValue
            defaultGuidance = ((raw["default_guidance"] ?? stored["default_guidance"]) as? NSNumber)?.doubleValue
            // config.json's key wins, even as null (guidance at every step); else the weights' own.
            let interval = raw.keys.contains("guidance_interval") ? raw["guidance_interval"] : stored["guidance_interval"]
            if let band = interval as? [NSNumber], band.count == 2 { guidanceInterval = band.map(\.doubleValue) }
            if let te = stored["text_encoder"] as? [String: Any] { textEncoder = te["kind"] as? String ?? "trigram" }
            if let steps = defaultSteps { bench = InfoBenchRow(path: benchResults + "/\(name)-\(steps).json") }
        } catch {
            self.error = "\(error)"
        }
    }
}

/// The headline of one stored `make bench` row (bench/results/<model>-<steps>.json).
struct InfoBenchRow: Encodable {
    var steps: Int
    var count: Int
    var fid: Double
    var classAccuracy: Double
    /// FID of real training images at the same count (the best this count allows).
    var realFID: Double?
    var imagesPerSecond: Double?
    var latencyMs: Double?

    enum CodingKeys: String, CodingKey {
        case steps, count, fid
        case classAccuracy = "class_accuracy", realFID = "real_fid", imagesPerSecond = "images_per_second", latencyMs = "latency_ms"
    }

    init?(path: String) {
        guard let data = FileManager.default.contents(atPath: path),
              let row = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let generated = row["generated"] as? [String: Any],
              let fid = (generated["fid"] as? NSNumber)?.doubleValue,
              let accuracy = (generated["class_accuracy"] as? NSNumber)?.doubleValue else { return nil }
        steps = (row["steps"] as? NSNumber)?.intValue ?? 0
        count = (row["count"] as? NSNumber)?.intValue ?? (generated["count"] as? NSNumber)?.intValue ?? 0
        self.fid = fid
        classAccuracy = accuracy
        realFID = ((row["reference_train"] as? [String: Any])?["fid"] as? NSNumber)?.doubleValue
        imagesPerSecond = ((row["batch64"] as? [String: Any])?["images_per_second"] as? NSNumber)?.doubleValue
        latencyMs = ((row["batch1"] as? [String: Any])?["latency_p50_s"] as? NSNumber).map { $0.doubleValue * 1000 }
    }
}

/// What `coalesce info --json` prints.
struct InfoReport: Encodable {
    var version: String
    var cpuFeatures: String
    var blasCore: String
    var blasCoreSource: String
    var blasThreads: Int
    var computeThreads: Int
    var cores: Int
    var directKernels: String
    var blasLoadError: String?
    var models: [InfoModel]

    enum CodingKeys: String, CodingKey {
        case version, cores, models
        case cpuFeatures = "cpu_features", blasCore = "blas_core", blasCoreSource = "blas_core_source"
        case blasThreads = "blas_threads", computeThreads = "compute_threads", directKernels = "direct_kernels"
        case blasLoadError = "blas_load_error"
    }
}

enum CoalesceVersion {
    static let string = "0.1.0"
}
