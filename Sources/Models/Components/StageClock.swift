import Foundation

/// Wall time per stage of generation (text encoding, network calls, the sampler's arithmetic,
/// decoding), summed over everything that runs while it is on: `coalesce bench generate --profile`.
/// Off by default, when a stage costs one flag check. Stages may be timed from any thread; nested
/// stages each count their own time (the caller subtracts where it nests them).
public enum StageClock {
    nonisolated(unsafe) public static var enabled = false
    private static let lock = NSLock()
    nonisolated(unsafe) private static var seconds: [String: Double] = [:]
    nonisolated(unsafe) private static var counts: [String: Int] = [:]
    nonisolated(unsafe) private static var order: [String] = []

    /// Runs `body`, adding its wall time to `stage` when the clock is on.
    @inline(__always)
    public static func measure<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { add(stage, seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9) }
        return try body()
    }

    /// Adds `seconds` to `stage` (one more call).
    public static func add(_ stage: String, seconds s: Double) {
        lock.lock(); defer { lock.unlock() }
        if seconds[stage] == nil { order.append(stage) }
        seconds[stage, default: 0] += s
        counts[stage, default: 0] += 1
    }

    public static func reset() {
        lock.lock(); defer { lock.unlock() }
        seconds = [:]; counts = [:]; order = []
    }

    /// (stage, total seconds, calls) in the order the stages were first seen.
    public static func report() -> [(stage: String, seconds: Double, calls: Int)] {
        lock.lock(); defer { lock.unlock() }
        return order.map { ($0, seconds[$0] ?? 0, counts[$0] ?? 0) }
    }
}
