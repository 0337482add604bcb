import ArgumentParser
import Engine
import Foundation
import Service

/// `coalesce bench remote`: closed-loop round-trip latency against a running coalesced, with N
/// client threads in this one process (each its own DEALER socket). Lighter on the CPU than N
/// Python client processes, so on a 2-core machine it measures more of the daemon and less of
/// the clients (`python3 -m coalesce_client.bench` is the multi-process equivalent).
struct BenchRemote: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remote",
        abstract: "Round-trip latency p50/p99 and throughput against a running coalesced, N client threads.")

    @Option(help: "Daemon endpoint.") var endpoint = "tcp://127.0.0.1:5555"
    @Option(help: "Model to request.") var model = "coalescer"
    @Option(parsing: .upToNextOption, help: "Client counts to measure, one row each.") var clients: [Int] = [1, 16]
    @Option(help: "Seconds per row.") var seconds = 5.0
    @Option(help: "Steps per request (0 = the model's default).") var steps: Int32 = 0
    @Option(help: "Images per request.") var count: Int32 = 1

    func run() throws {
        guard clients.allSatisfy({ $0 >= 1 && $0 <= 256 }) else { throw ValidationError("--clients must be 1...256") }
        guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
        print("# \(endpoint) model=\(model) steps=\(steps) count=\(count) seconds=\(seconds), client threads in one process")
        print("clients  requests    req/s   p50_ms   p90_ms   p99_ms   max_ms  errors")
        for n in clients {
            let tally = Tally()
            let start = ContinuousClock.now
            let warmupEnd = start + .milliseconds(300)
            let end = warmupEnd + .milliseconds(Int(seconds * 1000))
            // One OS thread per client (concurrentPerform would run only as many as there are cores).
            let done = DispatchGroup()
            for i in 0..<n {
                done.enter()
                Thread.detachNewThread {
                defer { done.leave() }
                guard let client = try? ServiceClient(endpoint: endpoint, timeout: .seconds(10)) else {
                    tally.lock.withLock { tally.errors += 1 }
                    return
                }
                var mine: [Double] = []
                var seed = UInt64(i) << 32
                while ContinuousClock.now < end {
                    let t0 = ContinuousClock.now
                    do {
                        _ = try client.generate(GenerateRequest(model: model, prompt: "a sneaker", seed: seed,
                                                                steps: steps, count: count))
                        let t1 = ContinuousClock.now
                        if t0 >= warmupEnd {
                            let d = t1 - t0
                            mine.append(Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15)
                        }
                    } catch {
                        tally.lock.withLock {
                            tally.errors += 1
                            if tally.firstError == nil { tally.firstError = "\(error)" }
                        }
                    }
                    seed &+= 1
                }
                tally.lock.withLock { tally.latencies += mine }
                }
            }
            done.wait()
            let latencies = tally.latencies.sorted(), errors = tally.errors, firstError = tally.firstError
            func q(_ p: Double) -> Double {
                latencies.isEmpty ? .nan : latencies[min(latencies.count - 1, Int(p * Double(latencies.count)))]
            }
            print(String(format: "%7d %9d %8.0f %8.3f %8.3f %8.3f %8.2f %7d", n, latencies.count,
                         Double(latencies.count) / seconds, q(0.5), q(0.9), q(0.99), latencies.last ?? .nan, errors))
            if let firstError { print("  first error: \(firstError)") }
        }
    }
}

/// What the client threads of one round add up, under its lock.
private final class Tally: @unchecked Sendable {
    let lock = Lock()
    var latencies: [Double] = []
    var errors = 0
    var firstError: String?
}
