import Foundation
import Models

// `DiffusionSamplingSettings` (Models) are what a diffusion model's config carries and a model
// directory's config.json may override ("default_steps", "default_guidance", "guidance_interval";
// for pixel-space models also "clip_sample" and "clip_recompute_noise").

extension ModelDirectoryConfig {
    /// Applies the directory's overrides to `settings`, then caps steps at `SamplingLimits.maxSteps`
    /// (CZ_MAX_STEPS, the limit of every face), so that `describe` reports what can actually be
    /// asked for.
    public func apply<S: DiffusionSamplingSettings>(to settings: inout S) throws {
        let g = SamplingLimits.guidanceRange
        if let s = try int("default_steps", in: 1...settings.maxSteps) { settings.defaultSteps = s }
        if let v = try number("default_guidance", in: Double(g.lowerBound)...Double(g.upperBound)) { settings.defaultGuidance = Float(v) }
        if let v = object["guidance_interval"] {
            if v is NSNull {
                settings.guidanceInterval = nil
            } else {
                guard let a = v as? [Any], a.count == 2, !a.contains(where: Self.isBool),
                      let lo = a[0] as? Double, let hi = a[1] as? Double, (try? ClassifierFreeGuidance.validate(interval: [lo, hi])) != nil else {
                    throw BackendError.invalidArgument("\(path): \"guidance_interval\" must be [lo, hi] with 0 <= lo < hi <= 1 (fractions of the noise range, 1 = pure noise) or null, got \(v)")
                }
                settings.guidanceInterval = [lo, hi]
            }
        }
        for key in ["clip_sample", "clip_recompute_noise"] {
            guard let v = object[key] else { continue }
            guard Self.isBool(v), let b = v as? Bool else {
                throw BackendError.invalidArgument("\(path): \"\(key)\" must be true or false, got \(v)")
            }
            guard var pixel = settings as? any PixelSamplingSettings else {
                throw BackendError.invalidArgument("\(path): \"\(key)\" is a setting of pixel-space models (nested-unet), not of this backend")
            }
            if key == "clip_sample" { pixel.clipSample = b } else { pixel.clipRecomputeNoise = b }
            settings = pixel as! S
        }
        settings.maxSteps = min(settings.maxSteps, SamplingLimits.maxSteps)
        settings.defaultSteps = min(settings.defaultSteps, settings.maxSteps)
    }
}
