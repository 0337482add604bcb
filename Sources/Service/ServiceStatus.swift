// ServiceStatus: the daemon's liveness facts for HTTP probes.

/// The daemon's readiness, by the rule of the protobuf Health reply: ready while at least one
/// model is loaded and no drain was requested.
public struct ServiceStatus: Sendable, Equatable {
    public var ready: Bool
    public var draining: Bool
    public var modelsLoaded: Int
    public var queueDepth: Int

    public init(ready: Bool, draining: Bool, modelsLoaded: Int, queueDepth: Int) {
        self.ready = ready
        self.draining = draining
        self.modelsLoaded = modelsLoaded
        self.queueDepth = queueDepth
    }
}
