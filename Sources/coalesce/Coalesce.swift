import ArgumentParser

@main
struct Coalesce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coalesce",
        abstract: "Coalesce: few-step image generation — train, generate, evaluate, benchmark.",
        subcommands: [Info.self])
}
