// Engine generation: validation, batching of compatible requests, progress fan-out, deadlines.

/// One request of a batch plus its own progress closure (return false to cancel this request).
public struct BatchItem {
    public var request: GenerateRequest
    public var progress: ProgressHandler?
    /// Asked between steps, when the instance can stop its backend sooner than the next step's
    /// progress would (a worker process, told to stop at once): false cancels this request as
    /// `progress` returning false does. Nil: wanted until `progress` says otherwise.
    public var stillWanted: (() -> Bool)?

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
    ///
    /// A request for more images than the model takes in one backend call (its `max_batch`), up to
    /// the engine's `maxCount`, runs as parts of `max_batch` images one after another on the same
    /// model instance, image i keeping seed + i, so the bytes are those of asking part by part;
    /// progress counts over all parts.
    public func generate(_ request: GenerateRequest, progress: ProgressHandler? = nil) throws -> ImageBatch {
        if request.count > 1, let model = try? instance(request.model), Int(request.count) > model.info.maxBatch {
            return try generateInParts(request, on: model, progress: progress)
        }
        guard let result = generateBatch([BatchItem(request: request, progress: progress)]).first else {
            throw EngineError.internal("generateBatch returned no result")
        }
        return try result.get()
    }

    /// Generates several requests, batching those that share model, steps and guidance into as
    /// few backend calls as the model's max batch allows. Results are in the order of `items`;
    /// one request's failure (bad argument, cancel, deadline) does not fail the others.
    public func generateBatch(_ items: [BatchItem]) -> [Result<ImageBatch, EngineError>] {
        var results = [Result<ImageBatch, EngineError>?](repeating: nil, count: items.count)
        // Group by model, resolving each model's instance once for the whole call.
        var byModel: [String: [Int]] = [:]
        var order: [String] = []
        for (i, item) in items.enumerated() {
            if byModel[item.request.model] == nil { order.append(item.request.model) }
            byModel[item.request.model, default: []].append(i)
        }
        for name in order {
            let indices = byModel[name] ?? []
            let model: BackendModel
            do {
                model = try instance(name)
            } catch let e as EngineError {
                for i in indices { results[i] = .failure(e) }
                continue
            } catch {
                for i in indices { results[i] = .failure(.internal("\(error)")) }
                continue
            }
            // Validate, then group by (steps, guidance) and cut into chunks of <= max batch images.
            var groups: [GroupKey: [Int]] = [:]
            var groupOrder: [GroupKey] = []
            let now = ContinuousClock.now
            for i in indices {
                let r = items[i].request
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
                let key = GroupKey(steps: r.steps == 0 ? Int32(model.info.defaultSteps) : r.steps,
                                   guidance: model.info.supportsGuidance ? r.guidance : 0)
                if groups[key] == nil { groupOrder.append(key) }
                groups[key, default: []].append(i)
            }
            for key in groupOrder {
                var chunk: [Int] = []
                var images = 0
                for i in groups[key] ?? [] {
                    let c = Int(items[i].request.count)
                    if images + c > model.info.maxBatch, !chunk.isEmpty {
                        run(chunk, of: items, on: model, into: &results)
                        chunk = []
                        images = 0
                    }
                    chunk.append(i)
                    images += c
                }
                if !chunk.isEmpty { run(chunk, of: items, on: model, into: &results) }
            }
        }
        return results.map { $0 ?? .failure(.internal("request was not processed")) }
    }

    /// `generate` for a request of more images than one backend call of `model` takes.
    private func generateInParts(_ request: GenerateRequest, on model: BackendModel,
                                 progress: ProgressHandler?) throws -> ImageBatch {
        try validate(request, for: model, inParts: true)
        if let d = request.deadline, d <= ContinuousClock.now {
            throw EngineError.deadlineExceeded("deadline passed before the request started")
        }
        let size = model.info.maxBatch, count = Int(request.count)
        let parts = stride(from: 0, to: count, by: size).map { ($0, min(size, count - $0)) }
        var pixels: [UInt8] = []
        pixels.reserveCapacity(count * model.info.imageBytes)
        var last: ImageBatch?
        for (k, (start, n)) in parts.enumerated() {
            var part = request
            part.seed = request.seed &+ UInt64(start)
            part.count = Int32(n)
            let counted: ProgressHandler? = progress.map { p in
                { g in p(GenerateProgress(step: k * g.total + g.step, total: parts.count * g.total)) }
            }
            var results = [Result<ImageBatch, EngineError>?](repeating: nil, count: 1)
            run([0], of: [BatchItem(request: part, progress: counted)], on: model, into: &results)
            let batch = try (results[0] ?? .failure(.internal("request was not processed"))).get()
            pixels += batch.pixels
            last = batch
        }
        guard let last else { throw EngineError.internal("no parts generated") }
        return ImageBatch(model: last.model, backend: last.backend, backendVersion: last.backendVersion,
                          revision: last.revision, generation: last.generation, width: last.width,
                          height: last.height, channels: last.channels, count: count, pixels: pixels)
    }

    /// Checks one request against the engine's limits and the model's own (`inParts`: the count
    /// may exceed the model's max batch, up to the engine's limit).
    func validate(_ r: GenerateRequest, for model: BackendModel, inParts: Bool = false) throws {
        let limits = configuration.limits
        guard r.count >= 1, r.count <= limits.maxCount else {
            throw EngineError.invalidArgument("count must be in 1...\(limits.maxCount), got \(r.count)")
        }
        guard inParts || r.count <= model.info.maxBatch else {
            throw EngineError.invalidArgument("count must be in 1...\(model.info.maxBatch) (the model's max batch), got \(r.count)")
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

    /// Runs one chunk (same model, steps, guidance; fits max batch) and fills its results.
    /// A request whose deadline passed before the backend call starts (an earlier chunk or part
    /// ran meanwhile) fails without it: no backend step is spent on it.
    private func run(_ chunk: [Int], of items: [BatchItem], on model: BackendModel,
                     into results: inout [Result<ImageBatch, EngineError>?]) {
        let start = ContinuousClock.now
        let chunk = chunk.filter { i in
            guard let d = items[i].request.deadline, d <= start else { return true }
            results[i] = .failure(.deadlineExceeded("deadline passed before the request started"))
            return false
        }
        if chunk.isEmpty { return }
        // Per-request outcome decided by the progress fan-out: nil = still wanted.
        var stopped = [EngineError?](repeating: nil, count: chunk.count)
        var reached = (step: 0, total: 0)
        let fanOut: (Int, Int) -> Bool = { step, total in
            reached = (step, total)
            let now = ContinuousClock.now
            var anyLive = false
            for (k, i) in chunk.enumerated() where stopped[k] == nil {
                if let d = items[i].request.deadline, d <= now {
                    stopped[k] = .deadlineExceeded("deadline passed at step \(step) of \(total)")
                } else if let p = items[i].progress, !p(GenerateProgress(step: step, total: total)) {
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
            for (k, i) in chunk.enumerated() where stopped[k] == nil {
                if let d = items[i].request.deadline, d <= now {
                    stopped[k] = .deadlineExceeded("deadline passed \(at)")
                } else if let w = items[i].stillWanted, !w() {
                    stopped[k] = .cancelled("cancelled by the caller \(at)")
                } else {
                    anyLive = true
                }
            }
            return anyLive
        }
        let reqs = chunk.map { i -> BackendRequest in
            let r = items[i].request
            return BackendRequest(prompt: r.prompt, seed: r.seed, steps: r.steps, count: r.count,
                                  guidance: model.info.supportsGuidance ? r.guidance : 0)
        }
        // The latest deadline of the chunk, when every request has one (an instance that cannot
        // interrupt its backend gives up some time after it).
        let deadlines = chunk.compactMap { items[$0].request.deadline }
        let deadline = deadlines.count == chunk.count ? deadlines.max() : nil
        model.enter()
        defer { model.leave() }
        let output = model.run(reqs, deadline: deadline, progress: fanOut, stillWanted: wanted)
        let outcomes = output.results
        for (k, i) in chunk.enumerated() {
            let r = items[i].request
            if let e = stopped[k] {
                results[i] = .failure(e)
                continue
            }
            switch outcomes[k] {
            case .failure(let e):
                results[i] = .failure(e)
            case .success(let range):
                // Every request of the call keeps the call's one buffer and its range of it.
                results[i] = .success(ImageBatch(
                    model: model.name, backend: model.instance.backendName, backendVersion: model.instance.backendVersion,
                    revision: model.info.revision, generation: model.generation,
                    width: model.info.width, height: model.info.height, channels: model.info.channels,
                    count: Int(r.count), buffer: output.pixels, range: range))
            }
        }
        logger.debug("batch generated", metadata: [
            "model": "\(model.name)", "generation": "\(model.generation)", "requests": "\(chunk.count)",
            "images": "\(reqs.reduce(0) { $0 + Int($1.count) })", "ms": "\(milliseconds(since: start))",
            "failed": "\(outcomes.filter { if case .failure = $0 { return true } else { return false } }.count)"])
    }
}

private struct GroupKey: Hashable {
    var steps: Int32
    var guidance: Float
}
