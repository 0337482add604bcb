// The generation limits as the samplers and backends see them.

/// Steps and guidance a sampler accepts. These repeat the engine's definition (`EngineLimits` in
/// Sources/Engine/GenerateRequest.swift, which every face checks first): Models cannot import the
/// Engine, and the backends (BackendKit, the plugins) see Models but not the Engine. Both are
/// checked against Include/coalesce.h (`CZ_MAX_STEPS`, `CZ_MAX_GUIDANCE`) by tests, so they
/// cannot drift apart.
public enum SamplingLimits {
    /// Most steps any request may ask for (CZ_MAX_STEPS).
    public static let maxSteps = 64
    /// Accepted guidance scales (CZ_MAX_GUIDANCE is the upper bound); 0 = the model's default.
    public static let guidanceRange: ClosedRange<Float> = 0...100
}
