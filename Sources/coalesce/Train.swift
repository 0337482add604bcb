import ArgumentParser

/// `coalesce train <model>`: one subcommand per trainable model.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model (the evaluation classifier, autoencoders, generators).",
        subcommands: [TrainClassifier.self, TrainAutoencoder.self, TrainCoalescer.self, TrainTextEncoder.self,
                      TrainLatentDiffusion.self, TrainDistilledUNet.self, TrainNestedUNet.self, TrainTeacherPairs.self])
}
