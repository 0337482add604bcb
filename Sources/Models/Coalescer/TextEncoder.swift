import Foundation
import Tensor

/// Configuration of `TextEncoder`. JSON keys are snake_case.
public struct TextEncoderConfig: Codable, Equatable, Sendable {
    /// Hash buckets for word and character-trigram features.
    public var buckets: Int = 2048
    /// Hidden width of the MLP.
    public var hidden: Int = 128
    /// Output (description-embedding) dimension; embeddings are L2-normalised.
    public var dim: Int = 16
    /// Only the first this-many words of a prompt are used (bounds the cost of huge prompts).
    public var maxWords: Int = 256

    public init() {}

    enum CodingKeys: String, CodingKey {
        case buckets, hidden, dim, maxWords = "max_words"
    }

    public func validate() throws {
        guard buckets >= 16, hidden > 0, dim > 0, maxWords > 0 else {
            throw ModelError.invalidConfig("text encoder: buckets >= 16, hidden, dim, max_words > 0 (got \(self))")
        }
    }
}

/// Prompt -> description embedding, for any UTF-8 string.
///
/// Features: the prompt is lower-cased, every character that is not a letter or digit becomes a
/// word break, and each word contributes one whole-word feature and its character trigrams with
/// boundary marks (`#ankle#` -> `#an`, `ank`, ...), each hashed (FNV-1a) into `buckets`. The
/// L2-normalised bag of counts goes through Linear -> SiLU -> Linear and the output is
/// L2-normalised. Unknown words still hit trigram buckets shared with known words; an empty
/// prompt gives the zero bag, whose embedding (the network's bias path) stands for
/// "unconditional". The first layer starts at zero, so buckets never seen in training add nothing.
public final class TextEncoder: Layer {
    public let config: TextEncoderConfig
    let fc1: Linear, fc2: Linear

    public init(config: TextEncoderConfig, rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        fc1 = Linear(config.buckets, config.hidden, rng: &rng)
        fc1.zeroInit()
        fc2 = Linear(config.hidden, config.dim, rng: &rng)
    }

    public var namedParameters: [(String, Tensor)] { nest("fc1", fc1) + nest("fc2", fc2) }

    /// The hashed feature bag of one prompt: (bucket, count) pairs, L2-normalised values.
    public func features(_ prompt: String) -> [(Int, Float)] {
        var words: [String] = []
        var current = ""
        for ch in prompt.lowercased() {
            if ch.isLetter || ch.isNumber {
                current.append(ch)
            } else if !current.isEmpty {
                words.append(current); current = ""
                if words.count >= config.maxWords { break }
            }
        }
        if !current.isEmpty && words.count < config.maxWords { words.append(current) }
        var counts: [Int: Float] = [:]
        for w in words {
            counts[TextEncoder.hash("w:" + w, config.buckets), default: 0] += 1
            let marked = Array("#" + w + "#")
            if marked.count >= 3 {
                for i in 0...(marked.count - 3) {
                    counts[TextEncoder.hash(String(marked[i..<(i + 3)]), config.buckets), default: 0] += 1
                }
            }
        }
        let norm = counts.values.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return counts.sorted { $0.key < $1.key }.map { ($0.key, norm > 0 ? $0.value / norm : 0) }
    }

    /// FNV-1a over the UTF-8 bytes, reduced mod `buckets`.
    static func hash(_ s: String, _ buckets: Int) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return Int(h % UInt64(buckets))
    }

    /// Dense feature bags (B, buckets) for a batch of prompts.
    public func featureMatrix(_ prompts: [String]) -> Tensor {
        let t = Tensor(zeros: [prompts.count, config.buckets])
        for (i, p) in prompts.enumerated() {
            for (k, v) in features(p) { t.data[i * config.buckets + k] = v }
        }
        return t
    }

    /// Description embeddings (B, dim), unit length, with autograd (for training).
    public func forward(_ bags: Tensor) -> Tensor {
        let y = fc2(fc1(bags).silu())
        return y / y.square().sumLast().sqrt(eps: 1e-8)
    }

    /// Description embeddings (B, dim) of `prompts`.
    public func embed(_ prompts: [String]) -> Tensor { forward(featureMatrix(prompts)) }
}
