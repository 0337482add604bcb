import ArgumentParser
import Tensor

@main
struct Coalesce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coalesce",
        abstract: "Coalesce: few-step image generation — train, generate, evaluate, benchmark.",
        subcommands: [Info.self, Bench.self, Train.self, Eval.self, Generate.self])

    /// Tunes glibc malloc for tensor workloads (keep freed blocks for reuse instead of handing
    /// them back to the kernel, which must then zero fresh pages; see `Runtime.tuneAllocator`)
    /// before anything allocates, then runs the command line.
    static func main() {
        Runtime.tuneAllocator()
        main(nil)
    }
}
