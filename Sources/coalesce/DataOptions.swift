import ArgumentParser
import ImageIO
import Training

/// `--data` and `--size`, shared by every `coalesce train ...` command.
struct DataOptions: ParsableArguments {
    @Option(help: "Training images: fashion-mnist, or a folder of PNGs (optional captions.jsonl; class from a \"label\" field or the subfolder name).")
    var data = TrainingData.fashionMNIST
    @Option(help: "Resize every image to S x S (area averaging); S a multiple of 4.") var size: Int?
    @Option(help: "Use only the first N training images (0 = all).") var trainLimit = 0

    /// (training images, held-out images).
    func load() throws -> (LabeledImages, LabeledImages) {
        let d = try TrainingData.load(data, size: size)
        return (trainLimit > 0 ? d.train.slice(0..<trainLimit) : d.train, d.test)
    }
}
