import ArgumentParser
import Foundation
import Engine
import Tensor

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print versions, the BLAS core and threads, CPU features and the models found (with their parameter counts).")

    @Option(help: "Models directory to list.") var modelsDir = "models"
    @Flag(help: "Print the same as JSON.") var json = false

    func run() throws {
        let loadError = BLAS.load()
        let models = ModelRepository(root: modelsDir).modelNames().map { InfoModel(name: $0, modelsDirectory: modelsDir) }
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
        print("blas core:      \(BLAS.coreName) (chosen by: \(BLAS.coreSource); preferred for this CPU: \(BLAS.preferredCore.isEmpty ? "none" : BLAS.preferredCore))")
        print("blas threads:   \(BLAS.threads)\(BLAS.threads == 1 ? " (products are split over the compute threads)" : "")")
        print("blas config:    \(BLAS.config)")
        print("compute threads: \(Runtime.threads)")
        print("direct kernels: \(Tensor.directKernelISA) (3x3 conv, SiLU, group norm, transposes; \(Conv2dPath.current))")
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
    var error: String?

    enum CodingKeys: String, CodingKey {
        case name, backend, weights, parameters, error
        case parameterGroups = "parameter_groups"
    }

    init(name: String, modelsDirectory: String) {
        self.name = name
        let repo = ModelRepository(root: modelsDirectory)
        do {
            let config = try repo.config(for: name)
            backend = config.backend
            weights = config.weights
            if let w = config.weights {
                let st = try SafeTensors.read(path: try repo.directory(for: name) + "/" + w)
                parameterGroups = st.parameterCounts
                parameters = parameterGroups.values.reduce(0, +)
            }
        } catch {
            self.error = "\(error)"
        }
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
