import ArgumentParser

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: tensor ops and training speed, generation speed.",
        subcommands: [BenchOps.self, BenchGenerate.self, BenchIndex.self, BenchRemote.self, BenchBlocks.self, BenchUNet.self])
}
