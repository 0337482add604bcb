/// Errors thrown by the ImageIO module. Every case names the file (or the operation) and says what
/// was wrong, so a message can be shown to a user as is.
public enum ImageIOError: Error, CustomStringConvertible, Equatable {
    /// A system call on a file failed: the path, the call (`open`, `read`, `rename`, ...) and the
    /// system's message for `errno`.
    case io(path: String, call: String, message: String)
    /// libpng could not encode or decode an image; the message is libpng's own (`png_image.message`).
    case png(String)
    /// An image had invalid dimensions or a pixel buffer that does not match them.
    case invalidImage(String)
    /// An IDX file was malformed: bad magic, unsupported element type, bad dimensions, truncated
    /// data or trailing bytes.
    case idx(path: String, message: String)
    /// A data set file is missing; `hint` says how to get it (for example the Debian package).
    case missingDataset(path: String, hint: String)
    /// A data set's files were readable but inconsistent (counts, sizes or labels).
    case dataset(path: String, message: String)
    /// A line of a `captions.jsonl` file was invalid (1-based line number).
    case captions(path: String, line: Int, message: String)
    /// An image folder was inconsistent (for example an image whose size differs from the others).
    case imageFolder(path: String, message: String)

    public var description: String {
        switch self {
        case let .io(path, call, message):
            return "\(path): \(call) failed: \(message)"
        case let .png(message):
            return "PNG: \(message)"
        case let .invalidImage(message):
            return "invalid image: \(message)"
        case let .idx(path, message):
            return "\(path): invalid IDX file: \(message)"
        case let .missingDataset(path, hint):
            return "\(path): data set file not found; \(hint)"
        case let .dataset(path, message):
            return "\(path): \(message)"
        case let .captions(path, line, message):
            return "\(path):\(line): \(message)"
        case let .imageFolder(path, message):
            return "\(path): \(message)"
        }
    }
}
