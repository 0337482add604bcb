// Job: one accepted generate request, from arrival to its final reply.
import Engine

/// Where a reply goes: the endpoint's socket and the envelope to send back before the payload
/// (the client's ROUTER identity; behind a broker also the broker's; plus the empty delimiter
/// frame when the client sent one, REQ-style).
struct ReplyRoute: Hashable, Sendable {
    var endpoint: Int
    var envelope: [[UInt8]]
}

/// An accepted generate request.
final class Job: @unchecked Sendable {
    let route: ReplyRoute
    let id: String
    let op: GenerateOp
    let arrival: ContinuousClock.Instant
    let deadline: ContinuousClock.Instant?
    private let lock = Lock()
    private var cancelledFlag = false
    private var finalClaimed = false
    private var reported = (step: 0, total: 0)

    init(route: ReplyRoute, id: String, op: GenerateOp, arrival: ContinuousClock.Instant, deadline: ContinuousClock.Instant?) {
        self.route = route
        self.id = id
        self.op = op
        self.arrival = arrival
        self.deadline = deadline
    }

    var isCancelled: Bool { lock.withLock { cancelledFlag } }
    func cancel() { lock.withLock { cancelledFlag = true } }

    /// Claims the job's one final reply: true for the first caller only (the worker thread when
    /// the backend call ends, or the I/O thread when the deadline passes while it runs). Nothing
    /// is sent for the job after its final reply, and no second one.
    func claimFinal() -> Bool {
        lock.withLock {
            if finalClaimed { return false }
            finalClaimed = true
            return true
        }
    }

    var isAnswered: Bool { lock.withLock { finalClaimed } }

    /// The backend reached `step` of `total`: runs `report` when the step is past every step
    /// reported before and no final reply was claimed. So the steps a client hears never go back
    /// (after a worker crash the request runs again from its first step: nothing is reported until
    /// the retry passes the last step reported), and none follows the final reply (`report` runs
    /// under the job's lock, which `claimFinal` takes).
    func progressed(step: Int, total: Int, report: () -> Void) {
        lock.withLock {
            guard !finalClaimed, step > reported.step else { return }
            reported = (step, total)
            report()
        }
    }

    /// The last step reported (0 of 0 before the first).
    var lastReported: (step: Int, total: Int) { lock.withLock { reported } }

    /// True when (client envelope, request id) names this job.
    func matches(envelope: [[UInt8]], id: String) -> Bool {
        route.envelope == envelope && self.id == id
    }

    var request: GenerateRequest {
        GenerateRequest(model: op.model, prompt: op.prompt, seed: op.seed, steps: op.steps, count: op.count,
                        guidance: op.guidance, deadline: deadline)
    }
}
