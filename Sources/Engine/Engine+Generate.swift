// Engine generation: validation, batching of compatible requests, progress fan-out, deadlines.

/// One request of a batch plus its own progress closure (return false to cancel this request).
public struct BatchItem {
    public var request: GenerateRequest
    public var progress: ProgressHandler?
    /// Asked between steps, when the instance can stop its backend sooner than the next step's
    /// progress would (a worker process, told to stop at once): false cancels this request as
    /// `progress` returning false does. Nil: wanted until `progress` says otherwise.
    public var stillWanted: (() -> Bool)?
    /// False when `progress` reports to no one and only answers what `stillWanted` answers (a
    /// daemon request that did not ask for progress): a worker process then sends no message per
    /// step for it. True by default: `progress` is called after every step.
    public var reportsProgress = true

    public init(request: GenerateRequest, progress: ProgressHandler? = nil) {
        self.request = request
        self.progress = progress
    }
}

extension Engine {
    /// Generates the images of one request on the current instance of `request.model`.
    ///
    /// `progress` is called on this thread after every backend step; return false to cancel.
    /// - Throws: `EngineError` (`.invalidArgument` for limits, `.notFound` for an unloaded model,
    ///   `.cancelled`, `.deadlineExceeded`, `.unavailable` during shutdown, backend errors).
    public func generate(_ request: GenerateRequest, progress: ProgressHandler? = nil) throws -> ImageBatch {
        guard let result = generateBatch([BatchItem(request: request, progress: progress)]).first else {
            throw EngineError.internal("generateBatch returned no result")
        }
        return try result.get()
    }

    /// Generates several requests. This is the one place where requests become backend calls
    /// (`plan`): each request is validated once, requests that share model, steps and guidance
    /// share calls of at most the model's `max_batch` images, and a request for more images than
    /// that runs as parts of `max_batch` images, image i keeping seed + i, so the bytes are those
    /// of asking part by part; its progress counts over all parts. Results are in the order of
    /// `items`; one request's failure (bad argument, cancel, deadline) does not fail the others.
    public func generateBatch(_ items: [BatchItem]) -> [Result<ImageBatch, EngineError>] {
        // Count 0 means the default, one image, in every face (as steps and guidance 0 do).
        let items = items.map { item in
            var item = item
            if item.request.count == 0 { item.request.count = 1 }
            return item
        }
        var results = [Result<ImageBatch, EngineError>?](repeating: nil, count: items.count)
        var parts: [Int: [ImageBatch]] = [:]  // finished parts of requests that span several calls
        for call in plan(items, into: &results) {
            run(call, of: items, into: &results, parts: &parts)
        }
        return results.map { $0 ?? .failure(.internal("request was not processed")) }
    }

    /// Images `first ..< first + count` of request `item` (seeds seed + first onwards): part
    /// `index` of the `of` parts the request was cut into.
    struct Part {
        var item: Int
        var first: Int
        var count: Int
        var index: Int
        var of: Int
    }

    /// One backend call: parts of requests for one model that share steps and guidance, at most
    /// the model's `max_batch` images.
    struct Call {
        let model: BackendModel
        var parts: [Part] = []
        var images: Int { parts.reduce(0) { $0 + $1.count } }
    }

    /// Resolves each model once, validates each request once (failures go into `results`), and
    /// cuts the rest into backend calls, in the order the requests came.
    func plan(_ items: [BatchItem], into results: inout [Result<ImageBatch, EngineError>?]) -> [Call] {
        var models: [String: Result<BackendModel, EngineError>] = [:]
        var groups: [CallKey: [Int]] = [:]
        var order: [CallKey] = []
        let now = ContinuousClock.now
        for (i, item) in items.enumerated() {
            let r = item.request
            let resolved: Result<BackendModel, EngineError>
            if let known = models[r.model] {
                resolved = known
            } else {
                do { resolved = .success(try instance(r.model)) } catch let e as EngineError { resolved = .failure(e) } catch {
                    resolved = .failure(.internal("\(error)"))
                }
                models[r.model] = resolved
            }
            let model: BackendModel
            switch resolved {
            case .failure(let e): results[i] = .failure(e); continue
            case .success(let m): model = m
            }
            do {
                try validate(r, for: model)
            } catch let e as EngineError {
                results[i] = .failure(e)
                continue
            } catch {
                results[i] = .failure(.internal("\(error)"))
                continue
            }
            if let d = r.deadline, d <= now {
                results[i] = .failure(.deadlineExceeded("deadline passed before the request started"))
                continue
            }
            let key = CallKey(model: r.model, steps: r.steps == 0 ? Int32(model.info.defaultSteps) : r.steps,
                              guidance: model.info.supportsGuidance ? r.guidance : 0)
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(i)
        }
        var calls: [Call] = []
        for key in order {
            guard case .success(let model)? = models[key.model] else { continue }
            let size = model.info.maxBatch
            var call = Call(model: model)
            for i in groups[key] ?? [] {
                let count = Int(items[i].request.count)
                if count <= size {
                    // Whole requests share a call while they fit.
                    if call.images + count > size, !call.parts.isEmpty { calls.append(call); call = Call(model: model) }
                    call.parts.append(Part(item: i, first: 0, count: count, index: 0, of: 1))
                } else {
                    // A request bigger than one call: one call per part.
                    if !call.parts.isEmpty { calls.append(call); call = Call(model: model) }
                    let of = (count + size - 1) / size
                    for k in 0..<of {
                        let part = Part(item: i, first: k * size, count: min(size, count - k * size), index: k, of: of)
                        calls.append(Call(model: model, parts: [part]))
                    }
                }
            }
            if !call.parts.isEmpty { calls.append(call) }
        }
        return calls
    }

    /// Checks one request against the engine's limits and the model's own (a count above the
    /// model's `max_batch`, up to the engine's limit, runs in parts).
    func validate(_ r: GenerateRequest, for model: BackendModel) throws {
        let limits = configuration.limits
        guard r.count >= 1, r.count <= limits.maxCount else {
            throw EngineError.invalidArgument("count must be in 1...\(limits.maxCount), got \(r.count)")
        }
        let maxSteps = min(Int(limits.maxSteps), model.info.maxSteps)
        guard r.steps >= -1, r.steps <= maxSteps else {
            throw EngineError.invalidArgument(
                "steps must be in 1...\(maxSteps), or 0 for the default (\(model.info.defaultSteps)) or -1 for auto; got \(r.steps)")
        }
        guard r.prompt.utf8.count <= limits.maxPromptBytes else {
            // The C library's words for it (it sees a C string only up to the limit), so every face
            // answers the same.
            throw EngineError.invalidArgument("prompt is longer than \(limits.maxPromptBytes) bytes")
        }
        guard !r.prompt.utf8.contains(0) else {
            throw EngineError.invalidArgument("prompt contains a NUL byte")
        }
        let g = EngineLimits.guidanceRange
        guard r.guidance.isFinite, g.contains(r.guidance) else {
            throw EngineError.invalidArgument(
                "guidance must be a finite number in \(Int(g.lowerBound))...\(Int(g.upperBound)) (0 = the model's default), got \(r.guidance)")
        }
    }

    /// Runs one call and fills the results of the requests it finishes. A request whose deadline
    /// passed before the call starts (an earlier call ran meanwhile), or whose earlier part
    /// failed, fails without it: no backend step is spent on it.
    private func run(_ call: Call, of items: [BatchItem], into results: inout [Result<ImageBatch, EngineError>?],
                     parts finished: inout [Int: [ImageBatch]]) {
        let model = call.model
        let start = ContinuousClock.now
        let parts = call.parts.filter { p in
            if results[p.item] != nil { return false }
            guard let d = items[p.item].request.deadline, d <= start else { return true }
            results[p.item] = .failure(.deadlineExceeded("deadline passed before the request started"))
            finished[p.item] = nil
            return false
        }
        if parts.isEmpty { return }
        // Per-part outcome decided by the progress fan-out: nil = still wanted.
        var stopped = [EngineError?](repeating: nil, count: parts.count)
        var reached = (step: 0, total: 0)
        let fanOut: (Int, Int) -> Bool = { step, total in
            reached = (step, total)
            let now = ContinuousClock.now
            var anyLive = false
            for (k, p) in parts.enumerated() where stopped[k] == nil {
                if let d = items[p.item].request.deadline, d <= now {
                    stopped[k] = .deadlineExceeded("deadline passed at step \(step) of \(total)")
                } else if let progress = items[p.item].progress,
                          !progress(GenerateProgress(step: p.index * total + step, total: p.of * total)) {
                    stopped[k] = .cancelled("cancelled by the caller at step \(step) of \(total)")
                } else {
                    anyLive = true
                }
            }
            return anyLive
        }
        // The same decision between steps, for an instance that asks (see BatchItem.stillWanted).
        let wanted: () -> Bool = {
            let now = ContinuousClock.now
            let at = reached.step == 0 ? "before the backend's first step" : "after step \(reached.step) of \(reached.total)"
            var anyLive = false
            for (k, p) in parts.enumerated() where stopped[k] == nil {
                if let d = items[p.item].request.deadline, d <= now {
                    stopped[k] = .deadlineExceeded("deadline passed \(at)")
                } else if let w = items[p.item].stillWanted, !w() {
                    stopped[k] = .cancelled("cancelled by the caller \(at)")
                } else {
                    anyLive = true
                }
            }
            return anyLive
        }
        let reqs = parts.map { p -> BackendRequest in
            let r = items[p.item].request
            return BackendRequest(prompt: r.prompt, seed: r.seed &+ UInt64(p.first), steps: r.steps, count: Int32(p.count),
                                  guidance: model.info.supportsGuidance ? r.guidance : 0)
        }
        // The latest deadline of the call, when every request has one (an instance that cannot
        // interrupt its backend gives up some time after it).
        let deadlines = parts.compactMap { items[$0.item].request.deadline }
        let deadline = deadlines.count == parts.count ? deadlines.max() : nil
        // Steps must be heard when a request reports them, has no `stillWanted`, or has a deadline
        // (the step it reached is in the deadline's error message).
        let everyStep = !deadlines.isEmpty || parts.contains { p in
            let item = items[p.item]
            return item.progress != nil && (item.reportsProgress || item.stillWanted == nil)
        }
        model.enter()
        defer { model.leave() }
        let output = model.run(reqs, deadline: deadline, progress: fanOut, everyStep: everyStep, stillWanted: wanted)
        let outcomes = output.results
        for (k, p) in parts.enumerated() {
            let outcome: Result<ImageBatch, EngineError>
            if let e = stopped[k] {
                outcome = .failure(e)
            } else {
                switch outcomes[k] {
                case .failure(let e):
                    outcome = .failure(e)
                case .success(let range):
                    // Every request of the call keeps the call's one buffer and its range of it.
                    outcome = .success(ImageBatch(
                        model: model.name, backend: model.instance.backendName, backendVersion: model.instance.backendVersion,
                        revision: model.info.revision, generation: model.generation,
                        width: model.info.width, height: model.info.height, channels: model.info.channels,
                        count: p.count, buffer: output.pixels, range: range))
                }
            }
            switch outcome {
            case .failure:
                results[p.item] = outcome
                finished[p.item] = nil
            case .success(let batch) where p.of == 1:
                results[p.item] = .success(batch)
            case .success(let batch):
                // A request in parts: its images are joined once its last part is done.
                finished[p.item, default: []].append(batch)
                if p.index == p.of - 1, let all = finished.removeValue(forKey: p.item) {
                    results[p.item] = .success(ImageBatch(
                        model: batch.model, backend: batch.backend, backendVersion: batch.backendVersion,
                        revision: batch.revision, generation: batch.generation, width: batch.width,
                        height: batch.height, channels: batch.channels, count: Int(items[p.item].request.count),
                        pixels: all.flatMap(\.pixels)))
                }
            }
        }
        logger.debug("batch generated", metadata: [
            "model": "\(model.name)", "generation": "\(model.generation)", "requests": "\(parts.count)",
            "images": "\(reqs.reduce(0) { $0 + Int($1.count) })", "ms": "\(milliseconds(since: start))",
            "failed": "\(outcomes.filter { if case .failure = $0 { return true } else { return false } }.count)"])
    }
}

/// What requests must share to share a backend call.
struct CallKey: Hashable {
    var model: String
    var steps: Int32
    var guidance: Float
}
