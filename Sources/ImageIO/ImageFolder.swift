import Foundation

/// Images with captions (and optional labels), as read by `ImageFolder.load`.
/// Item `i` is `pixels[i * width * height ..< (i + 1) * width * height]` with `captions[i]`,
/// `labels[i]` and the file it came from, `files[i]` (as written in `captions.jsonl`).
public struct CaptionedImages: PackedImages, Equatable, Sendable {
    public var count: Int
    public var width: Int
    public var height: Int
    /// `count * width * height` values, row-major, top row first.
    public var pixels: [UInt8]
    public var files: [String]
    public var captions: [String]
    /// The optional integer label of each item (`nil` where the line had none).
    public var labels: [Int?]

    public init(count: Int, width: Int, height: Int, pixels: [UInt8], files: [String],
                captions: [String], labels: [Int?]) {
        self.count = count
        self.width = width
        self.height = height
        self.pixels = pixels
        self.files = files
        self.captions = captions
        self.labels = labels
    }

}

/// A directory of PNG images described by a `captions.jsonl` file, one JSON object per line:
///
///     {"file": "a.png", "caption": "a red dress", "label": 3}
///
/// `file` (a path relative to the directory) and `caption` are required strings; `label` is an
/// optional integer. Blank lines are skipped; a file may appear on several lines (one item per
/// line, e.g. several captions for one image). Only the files listed are read, in the order
/// listed; PNGs are converted to gray as `PNG.decode` documents. All images must have the same size.
public enum ImageFolder {
    /// The name of the captions file inside the directory.
    public static let captionsFileName = "captions.jsonl"

    private struct Line: Decodable {
        var file: String
        var caption: String
        var label: Int?

        enum CodingKeys: String, CodingKey { case file, caption, label }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            file = try c.decode(String.self, forKey: .file)
            caption = try c.decode(String.self, forKey: .caption)
            // Through Double: Foundation reports a fraction or an out-of-range integer read as
            // `Int` only as "not valid JSON" on Linux.
            if let v = try c.decodeIfPresent(Double.self, forKey: .label) {
                guard v.rounded() == v, abs(v) <= 0x1p53 else {
                    throw DecodingError.typeMismatch(Int.self, .init(codingPath: c.codingPath + [CodingKeys.label],
                                                                     debugDescription: "found \(v)"))
                }
                label = Int(v)
            }
        }
    }

    /// Reads `directory/captions.jsonl` and every image it lists.
    ///
    /// Throws `ImageIOError.captions` (with the 1-based line number) for a line that is not a JSON
    /// object with the fields above, `ImageIOError.imageFolder` naming the file whose size differs
    /// from the first image's (or when the file lists no items), and the errors of `PNG.read` for a
    /// missing or corrupt image.
    public static func load(directory: String) throws -> CaptionedImages {
        let captionsPath = FileIO.join(directory, captionsFileName)
        var files = [String](), captions = [String](), labels = [Int?]()
        var pixels = [UInt8]()
        var size: (width: Int, height: Int, file: String)?
        var cache = [String: GrayImage]()
        for entry in try readLines(directory: directory) {
            let imagePath = FileIO.join(directory, entry.file)
            let image: GrayImage
            if let cached = cache[entry.file] {
                image = cached
            } else {
                image = try PNG.read(path: imagePath)
                cache[entry.file] = image
            }
            if let s = size {
                guard image.width == s.width, image.height == s.height else {
                    throw ImageIOError.imageFolder(path: imagePath, message:
                        "image is \(image.width)x\(image.height) but \(s.file) (the first image) is "
                        + "\(s.width)x\(s.height); all images must have the same size")
                }
            } else {
                size = (image.width, image.height, imagePath)
            }
            pixels += image.pixels
            files.append(entry.file)
            captions.append(entry.caption)
            labels.append(entry.label)
        }
        guard let s = size else {
            throw ImageIOError.imageFolder(path: captionsPath, message: "lists no images")
        }
        return CaptionedImages(count: files.count, width: s.width, height: s.height, pixels: pixels,
                               files: files, captions: captions, labels: labels)
    }

    /// One parsed line of `captions.jsonl`.
    public struct Entry: Sendable {
        public var file: String, caption: String, label: Int?
    }

    /// The lines of `directory/captions.jsonl` (blank lines skipped), parsed but with no image
    /// read. Throws `ImageIOError.captions` with the 1-based line number for a bad line.
    public static func readLines(directory: String) throws -> [Entry] {
        let captionsPath = FileIO.join(directory, captionsFileName)
        let text = try FileIO.readAll(path: captionsPath)
        let decoder = JSONDecoder()
        var out: [Entry] = []
        var lineNumber = 0
        for rawLine in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = rawLine.last == UInt8(ascii: "\r") ? rawLine.dropLast() : rawLine
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            let entry: Line
            do {
                entry = try decoder.decode(Line.self, from: Data(line))
            } catch let error as DecodingError {
                throw ImageIOError.captions(path: captionsPath, line: lineNumber, message: explain(error))
            } catch {
                throw ImageIOError.captions(path: captionsPath, line: lineNumber, message: "not valid JSON")
            }
            guard !entry.file.isEmpty else {
                throw ImageIOError.captions(path: captionsPath, line: lineNumber, message: "\"file\" is empty")
            }
            guard FileIO.isFile(FileIO.join(directory, entry.file)) else {
                throw ImageIOError.captions(path: captionsPath, line: lineNumber,
                                            message: "image file \(FileIO.join(directory, entry.file)) does not exist")
            }
            out.append(Entry(file: entry.file, caption: entry.caption, label: entry.label))
        }
        return out
    }

    /// A short, readable reason for a JSON decoding failure of one line.
    private static func explain(_ error: DecodingError) -> String {
        func field(_ path: [CodingKey]) -> String {
            path.isEmpty ? "the line" : "\"" + path.map(\.stringValue).joined(separator: ".") + "\""
        }
        switch error {
        case let .keyNotFound(key, _):
            return "missing \"\(key.stringValue)\" (each line needs \"file\" and \"caption\")"
        case let .typeMismatch(type, ctx):
            if ctx.codingPath.isEmpty { return "expected a JSON object" }
            let isLabel = ctx.codingPath.last?.stringValue == "label"
            let expected = type == Int.self || isLabel ? "an integer" : type == String.self ? "a string"
                : "\(type)"
            return "\(field(ctx.codingPath)) must be \(expected)"
        case let .valueNotFound(_, ctx):
            return "\(field(ctx.codingPath)) is null"
        case let .dataCorrupted(ctx):
            return ctx.codingPath.isEmpty ? "not valid JSON"
                : "\(field(ctx.codingPath)) is invalid: \(ctx.debugDescription)"
        @unknown default:
            return "invalid line"
        }
    }
}
