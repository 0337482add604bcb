#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The Fashion-MNIST data set (Xiao, Rasul and Vollgraf, 2017): 28x28 gray images of clothing in
/// 10 classes, 60000 for training and 10000 for testing, white objects on a black background.
///
/// The IDX files come from the Debian package `dataset-fashion-mnist`, which installs them
/// gzip-compressed under `/usr/share/datasets/fashion-mnist`. The environment variable
/// `COALESCE_FASHION_MNIST` names another directory. Both plain and `.gz` files are accepted
/// (plain first).
public enum FashionMNIST {
    /// The class names, indexed by label.
    public static let classNames = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]

    /// Where the Debian package installs the files.
    public static let debianDirectory = "/usr/share/datasets/fashion-mnist"

    /// `$COALESCE_FASHION_MNIST` when set and not empty, else `debianDirectory`.
    public static var defaultDirectory: String {
        if let p = getenv("COALESCE_FASHION_MNIST"), p.pointee != 0 { return String(cString: p) }
        return debianDirectory
    }

    /// Which half of the data set.
    public enum Split: String, Sendable, CaseIterable {
        /// 60000 training images (`train-*` files).
        case train
        /// 10000 test images (`t10k-*` files).
        case test

        var filePrefix: String { self == .train ? "train" : "t10k" }
    }

    /// Loads one split. Throws `ImageIOError.missingDataset` naming the missing file (and how to
    /// install it), `ImageIOError.idx` for a malformed file, and `ImageIOError.dataset` when the
    /// image and label files disagree or a label is outside `0..<10`.
    public static func load(split: Split, directory: String = FashionMNIST.defaultDirectory) throws
        -> LabeledImages {
        let imagesPath = try locate("\(split.filePrefix)-images-idx3-ubyte", in: directory)
        let labelsPath = try locate("\(split.filePrefix)-labels-idx1-ubyte", in: directory)
        let images = try IDX.read(path: imagesPath)
        let labels = try IDX.read(path: labelsPath)
        guard images.dims.count == 3 else {
            throw ImageIOError.dataset(path: imagesPath,
                                       message: "expected 3 dimensions (count, rows, columns), got \(images.dims)")
        }
        guard labels.dims.count == 1 else {
            throw ImageIOError.dataset(path: labelsPath, message: "expected 1 dimension, got \(labels.dims)")
        }
        guard images.dims[0] == labels.dims[0] else {
            throw ImageIOError.dataset(path: labelsPath, message:
                "\(labels.dims[0]) labels for \(images.dims[0]) images in \(imagesPath)")
        }
        if let bad = labels.data.firstIndex(where: { Int($0) >= classNames.count }) {
            throw ImageIOError.dataset(path: labelsPath, message:
                "label \(labels.data[bad]) at index \(bad) is outside 0..<\(classNames.count)")
        }
        return LabeledImages(count: images.dims[0], width: images.dims[2], height: images.dims[1],
                             pixels: images.data, labels: labels.data.map { Int($0) }, classNames: classNames)
    }

    /// `directory/name` if it exists, else `directory/name.gz`, else a missing-data-set error.
    private static func locate(_ name: String, in directory: String) throws -> String {
        let plain = FileIO.join(directory, name)
        if FileIO.isFile(plain) { return plain }
        let gz = plain + ".gz"
        if FileIO.isFile(gz) { return gz }
        throw ImageIOError.missingDataset(path: gz, hint:
            "install the Debian package dataset-fashion-mnist (apt install dataset-fashion-mnist), "
            + "or set COALESCE_FASHION_MNIST to a directory holding the Fashion-MNIST IDX files")
    }
}
