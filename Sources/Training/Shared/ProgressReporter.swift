import Foundation

/// Prints a one-line progress report for a loop of known length to stderr:
/// `<label> step i/n  loss 0.4123  812.3 items/s  eta 1m23s`, at most once per `interval` seconds
/// (and always for the last step). Rate and time left come from wall-clock time since `init`.
///
/// Shared by every training loop and long evaluation. Not thread-safe: call from one thread.
public final class ProgressReporter {
    public let label: String
    public let total: Int
    public let itemsPerStep: Int
    public let interval: Double
    /// Set false to silence (tests).
    public var enabled: Bool
    private let start: DispatchTime
    private var lastPrint: DispatchTime?

    /// `itemsPerStep` (e.g. the batch size) turns steps/s into items/s.
    public init(label: String, total: Int, itemsPerStep: Int = 1, interval: Double = 1, enabled: Bool = true) {
        self.label = label
        self.total = max(1, total)
        self.itemsPerStep = max(1, itemsPerStep)
        self.interval = interval
        self.enabled = enabled
        self.start = DispatchTime.now()
    }

    /// Seconds since the reporter was created.
    public var elapsed: Double { Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9 }

    /// Reports that `step` (1-based) of `total` is done; `loss` and `extra` are shown when given.
    public func update(step: Int, loss: Float? = nil, extra: String = "") {
        guard enabled else { return }
        let now = DispatchTime.now()
        if step < total, let last = lastPrint,
           Double(now.uptimeNanoseconds - last.uptimeNanoseconds) / 1e9 < interval { return }
        lastPrint = now
        let t = elapsed
        let rate = t > 0 ? Double(step * itemsPerStep) / t : 0
        let eta = step > 0 ? t / Double(step) * Double(total - step) : 0
        var line = "\(label) step \(step)/\(total)"
        if let loss { line += String(format: "  loss %.4f", loss) }
        line += String(format: "  %.1f items/s  eta %@", rate, ProgressReporter.duration(eta))
        if !extra.isEmpty { line += "  " + extra }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// "1h02m", "3m07s", "12s".
    public static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
        if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return "\(s)s"
    }
}
