/// 8-bit pixels from values in [0, 1] (0 black, 1 white): v * 255 rounded to the nearest integer and
/// clamped to 0...255, the one conversion every generator output goes through.
public enum EightBit {
    @inlinable
    public static func pixel(_ v: Float) -> UInt8 { UInt8(max(0, min(255, (v * 255).rounded()))) }

    @inlinable
    public static func pixels(_ values: [Float]) -> [UInt8] { values.map(pixel) }
}
