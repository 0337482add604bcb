import ArgumentParser
import Tensor

@main
struct Coalesce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coalesce",
        abstract: "Coalesce: few-step image generation — train, generate, evaluate, benchmark.",
        subcommands: [Info.self, Bench.self, Train.self, Eval.self, Generate.self])
}
