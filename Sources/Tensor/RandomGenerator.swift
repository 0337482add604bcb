/// A seeded pseudo-random generator: xoshiro256** (Blackman & Vigna, 2018) seeded through
/// SplitMix64. The same seed gives the same sequence on every run and machine, which is what
/// "same seed, same image" rests on. Not thread-safe: give each thread its own generator
/// (derive sub-seeds with `fork()` or `RandomGenerator(seed: seed &+ i)`).
///
/// - `nextUInt64()`: 64 raw bits.
/// - `nextFloat()`: uniform in [0, 1) with 24 bits of precision.
/// - `nextNormal()`: standard normal by the Box–Muller transform (one pair per two calls).
public struct RandomGenerator: RandomNumberGenerator {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64
    private var spareNormal: Float?

    public init(seed: UInt64) {
        var sm = seed
        func splitmix(_ x: inout UInt64) -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix(&sm); s1 = splitmix(&sm); s2 = splitmix(&sm); s3 = splitmix(&sm)
    }

    @inline(__always)
    public mutating func next() -> UInt64 { nextUInt64() }

    @inline(__always)
    public mutating func nextUInt64() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = (s3 << 45) | (s3 >> 19)
        return result
    }

    /// Uniform in [0, 1).
    @inline(__always)
    public mutating func nextFloat() -> Float { Float(nextUInt64() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform integer in 0..<bound (bound > 0), without modulo bias.
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0)
        return Int(truncatingIfNeeded: next(upperBound: UInt64(bound)))
    }

    /// Standard normal.
    public mutating func nextNormal() -> Float {
        if let s = spareNormal { spareNormal = nil; return s }
        var u1 = nextFloat()
        while u1 <= 1e-12 { u1 = nextFloat() }
        let u2 = nextFloat()
        let r = (-2 * Float.log(u1)).squareRoot()
        let theta = 2 * Float.pi * u2
        spareNormal = r * Float.sin(theta)
        return r * Float.cos(theta)
    }

    /// A new independent generator derived from this one (advances this one).
    public mutating func fork() -> RandomGenerator { RandomGenerator(seed: nextUInt64()) }

    /// A random permutation of 0..<n (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 { for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, nextInt(below: i + 1)) } }
        return p
    }
}

extension Float {
    @inline(__always) static func log(_ x: Float) -> Float { Foundation.log(x) }
    @inline(__always) static func sin(_ x: Float) -> Float { Foundation.sin(x) }
    @inline(__always) static func cos(_ x: Float) -> Float { Foundation.cos(x) }
}
import Foundation
