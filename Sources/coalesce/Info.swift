import ArgumentParser
import Foundation
import Engine
import Tensor

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print versions, the BLAS core and threads, CPU features and the models found.")

    @Option(help: "Models directory to list.") var modelsDir = "models"

    func run() throws {
        let loadError = BLAS.load()
        print("coalesce \(CoalesceVersion.string)")
        print("cpu features:   \(BLAS.cpuFeatures)")
        print("blas core:      \(BLAS.coreName) (chosen by: \(BLAS.coreSource); preferred for this CPU: \(BLAS.preferredCore.isEmpty ? "none" : BLAS.preferredCore))")
        print("blas threads:   \(BLAS.threads)\(BLAS.threads == 1 ? " (products are split over the compute threads)" : "")")
        print("blas config:    \(BLAS.config)")
        print("compute threads: \(Runtime.threads)")
        print("direct kernels: \(Tensor.directKernelISA) (3x3 conv, SiLU, group norm, transposes; \(Conv2dPath.current))")
        if let loadError { print("warning: OpenBLAS not loaded, using slow fallback: \(loadError)") }
        let repo = ModelRepository(root: modelsDir)
        let names = repo.modelNames()
        print("models in \(modelsDir): \(names.isEmpty ? "none" : "")")
        for name in names {
            do {
                let config = try repo.config(for: name)
                print("  \(name)  (backend: \(config.backend))")
            } catch {
                print("  \(name)  (unreadable: \(error))")
            }
        }
    }
}

enum CoalesceVersion {
    static let string = "0.1.0"
}
