import ArgumentParser
import Foundation
import Tensor

/// `coalesce train <model>`: one subcommand per trainable model.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model (the evaluation classifier, autoencoders, generators).",
        subcommands: [TrainClassifier.self, TrainAutoencoder.self, TrainCoalescer.self, TrainTextEncoder.self,
                      TrainLatentDiffusion.self, TrainDistilledUNet.self, TrainNestedUNet.self, TrainTeacherPairs.self])
}

/// Tells a trainer's user, on stderr, when OpenBLAS runs narrower kernels than the CPU has.
func noteBLASCore() {
    if let note = BLAS.narrowCoreNote { FileHandle.standardError.write(Data((note + "\n").utf8)) }
}
