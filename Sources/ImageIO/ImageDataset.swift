import Foundation

/// A training set read from a folder of PNG images, for `coalesce train ... --data DIR`.
///
/// - Images: every `*.png` under the folder (recursively, in sorted path order), or, when the
///   folder has a `captions.jsonl`, the files it lists (one item per line, in order; see
///   `ImageFolder` for the line format).
/// - Class of an image: the line's `label` field where there is one (class names "0", "1", ...),
///   else the name of the subfolder it sits in (class names sorted), else none (-1).
/// - Caption: the line's `caption`, else the subfolder name with "_" and "-" read as spaces, else "".
/// - Channels: 3 if any image has colour (gray images are then repeated into R, G and B), else 1.
/// - Size: with `size`, every image is resized to size x size by area averaging; without it, all
///   images must have the same square size, a multiple of 4.
public enum ImageDataset {
    public static func load(directory: String, size: Int?) throws -> LabeledImages {
        guard FileIO.isDirectory(directory) else {
            throw ImageIOError.imageFolder(path: directory, message: "is not a directory (--data takes fashion-mnist or a folder of PNGs)")
        }
        if let s = size, !(4...1024).contains(s) || s % 4 != 0 {
            throw ImageIOError.imageFolder(path: directory, message: "--size \(s) must be a multiple of 4 in 4...1024")
        }
        var files: [String] = [], captions: [String] = [], labelField: [Int?] = []
        let captionsPath = FileIO.join(directory, ImageFolder.captionsFileName)
        if FileIO.isFile(captionsPath) {
            let lines = try ImageFolder.readLines(directory: directory)
            for l in lines { files.append(l.file); captions.append(l.caption); labelField.append(l.label) }
        } else {
            files = try listPNGs(directory)
            captions = files.map { caption(forSubfolderOf: $0) }
            labelField = files.map { _ in nil }
        }
        guard !files.isEmpty else {
            throw ImageIOError.imageFolder(path: directory, message: "contains no PNG images")
        }
        // Classes: label fields where any line has one, else subfolder names.
        var labels: [Int], classNames: [String]
        if labelField.contains(where: { $0 != nil }) {
            labels = labelField.map { $0 ?? -1 }
            let maxLabel = labels.max() ?? -1
            classNames = maxLabel >= 0 ? (0...maxLabel).map(String.init) : []
        } else {
            let subs = files.map { subfolder(of: $0) }
            classNames = Array(Set(subs.compactMap { $0 })).sorted()
            labels = subs.map { s in s.flatMap { classNames.firstIndex(of: $0) } ?? -1 }
        }
        // Decode.
        var decoded: [(pixels: [UInt8], width: Int, height: Int, channels: Int)] = []
        var cache: [String: Int] = [:]
        var order: [Int] = []
        for f in files {
            if let i = cache[f] { order.append(i); continue }
            let path = FileIO.join(directory, f)
            guard FileIO.isFile(path) else {
                throw ImageIOError.imageFolder(path: path, message: "image file does not exist")
            }
            decoded.append(try PNG.readPlanar(path: path))
            cache[f] = decoded.count - 1
            order.append(decoded.count - 1)
        }
        let channels = decoded.contains { $0.channels == 3 } ? 3 : 1
        let side: Int
        if let s = size {
            side = s
        } else {
            let first = decoded[0]
            for (k, d) in decoded.enumerated() where d.width != first.width || d.height != first.height {
                let name = files[order.firstIndex(of: k) ?? 0]
                throw ImageIOError.imageFolder(path: FileIO.join(directory, name), message:
                    "image is \(d.width)x\(d.height) but \(files[0]) is \(first.width)x\(first.height); "
                    + "pass --size S to resize every image to S x S")
            }
            guard first.width == first.height, first.width % 4 == 0 else {
                throw ImageIOError.imageFolder(path: FileIO.join(directory, files[0]), message:
                    "images are \(first.width)x\(first.height); the models need a square size that is a multiple of 4: pass --size S")
            }
            side = first.width
        }
        let n = channels * side * side
        var pixels = [UInt8](repeating: 0, count: files.count * n)
        var resized: [[UInt8]] = decoded.map { d in
            let r = d.width == side && d.height == side ? d.pixels
                : resizeArea(d.pixels, width: d.width, height: d.height, channels: d.channels, to: side)
            return d.channels == channels ? r : (0..<channels).flatMap { _ in r }  // gray -> R = G = B
        }
        for (i, k) in order.enumerated() { pixels.replaceSubrange((i * n)..<((i + 1) * n), with: resized[k]) }
        resized.removeAll()
        return LabeledImages(count: files.count, width: side, height: side, channels: channels, pixels: pixels,
                             labels: labels, captions: captions, classNames: classNames)
    }

    /// Area-averaging resize of planar pixels to side x side (each output pixel is the mean of the
    /// input area it covers, with fractional edge weights).
    public static func resizeArea(_ src: [UInt8], width: Int, height: Int, channels: Int, to side: Int) -> [UInt8] {
        func weights(_ inSize: Int) -> [[(Int, Double)]] {
            let scale = Double(inSize) / Double(side)
            return (0..<side).map { o in
                let a = Double(o) * scale, b = Double(o + 1) * scale
                var w: [(Int, Double)] = []
                var i = Int(a.rounded(.down))
                while Double(i) < b && i < inSize {
                    let lo = max(a, Double(i)), hi = min(b, Double(i + 1))
                    if hi > lo { w.append((i, (hi - lo) / scale)) }
                    i += 1
                }
                return w
            }
        }
        let wx = weights(width), wy = weights(height)
        var out = [UInt8](repeating: 0, count: channels * side * side)
        for c in 0..<channels {
            let plane = c * width * height
            for oy in 0..<side {
                for ox in 0..<side {
                    var acc = 0.0
                    for (y, ay) in wy[oy] { for (x, ax) in wx[ox] { acc += ay * ax * Double(src[plane + y * width + x]) } }
                    out[(c * side + oy) * side + ox] = UInt8(max(0, min(255, acc.rounded())))
                }
            }
        }
        return out
    }

    static func subfolder(of file: String) -> String? {
        let parts = file.split(separator: "/")
        return parts.count >= 2 ? String(parts[parts.count - 2]) : nil
    }

    static func caption(forSubfolderOf file: String) -> String {
        guard let s = subfolder(of: file) else { return "" }
        return String(s.map { $0 == "_" || $0 == "-" ? " " : $0 })
    }

    /// Relative paths of the `*.png` files under `directory`, sorted.
    static func listPNGs(_ directory: String) throws -> [String] {
        guard let e = FileManager.default.enumerator(atPath: directory) else {
            throw ImageIOError.imageFolder(path: directory, message: "cannot be listed")
        }
        var out: [String] = []
        while let f = e.nextObject() as? String {
            if f.lowercased().hasSuffix(".png") && FileIO.isFile(FileIO.join(directory, f)) { out.append(f) }
        }
        return out.sorted()
    }
}
