import Foundation
import Training

/// A progress line with an ETA for long CLI work, on stderr: drawn only when stderr is a terminal,
/// not `--quiet`, and the work has run longer than `delay` seconds (so quick commands print
/// nothing extra), redrawn in place at most ten times a second, and cleared when done.
///
/// `fraction` is the share of the work done, 0...1; the ETA assumes the rest goes at the pace so far.
final class TerminalProgress {
    let label: String
    let enabled: Bool
    let delay: Double
    private let start = Date()
    private var lastDraw: Date?
    private var drawn = false

    init(label: String, quiet: Bool, delay: Double = 1) {
        self.label = label
        self.enabled = !quiet && isatty(STDERR_FILENO) == 1
        self.delay = delay
    }

    /// Redraws the line with `fraction` done and an optional detail ("image 130/200").
    func update(fraction: Double, detail: String = "") {
        guard enabled else { return }
        let now = Date()
        let elapsed = now.timeIntervalSince(start)
        guard elapsed >= delay else { return }
        if let lastDraw, now.timeIntervalSince(lastDraw) < 0.1 { return }
        lastDraw = now
        let f = min(1, max(0, fraction))
        let eta = f > 0 ? elapsed / f * (1 - f) : .nan
        let width = 24, filled = Int((f * Double(width)).rounded(.down))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        var line = String(format: "%@ [%@] %3.0f%%", label, bar, f * 100)
        if !detail.isEmpty { line += "  " + detail }
        line += "  " + ProgressReporter.duration(elapsed) + " elapsed"
        if eta.isFinite { line += ", eta " + ProgressReporter.duration(eta) }
        FileHandle.standardError.write(Data(("\r\u{1B}[2K" + line).utf8))
        drawn = true
    }

    /// Clears the line if one was drawn.
    func finish() {
        guard drawn else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
        drawn = false
    }
}
