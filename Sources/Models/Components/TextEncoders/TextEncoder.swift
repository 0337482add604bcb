import Foundation
import Tensor

/// Which features a `TextEncoder` reads and what it does with them.
public enum TextEncoderKind: String, Codable, Sendable {
    /// Hashed words and character trigrams through an MLP (small, trained with the model; the default).
    case trigram
    /// The pretrained all-MiniLM-L6-v2 sentence embedding (`MiniLM`, frozen, loaded from
    /// models/minilm; not stored in the model's checkpoint) through an MLP trained to reproduce the
    /// model's trigram embeddings.
    case minilm
    /// The MiniLM sentence embedding, then attention over the source model's training captions:
    /// the description embedding is the mean of the model's own (trigram) embeddings of those
    /// captions, weighted by softmax(cosine of the MiniLM embeddings / temperature). Nothing is
    /// trained; a prompt lands among the embeddings the model was trained on.
    case minilmRetrieval = "minilm_retrieval"
}

/// Configuration of `TextEncoder`. JSON keys are snake_case; a config without `kind` is a
/// trigram encoder (every model trained before MiniLM).
public struct TextEncoderConfig: Codable, Equatable, Sendable {
    /// The encoder's input features.
    public var kind: TextEncoderKind = .trigram
    /// Hash buckets for word and character-trigram features (trigram).
    public var buckets: Int = 2048
    /// Width of the MiniLM sentence embedding (minilm).
    public var minilmWidth: Int = 384
    /// Hidden width of the MLP.
    public var hidden: Int = 128
    /// Output (description-embedding) dimension; embeddings are L2-normalised.
    public var dim: Int = 16
    /// Only the first this-many words of a prompt are used (trigram; bounds the cost of huge
    /// prompts). MiniLM reads the first 254 word pieces (`WordPieceTokenizer`).
    public var maxWords: Int = 256
    /// Softmax temperature of the cosines (minilm_retrieval).
    public var temperature: Float = 0.05
    /// Number of stored captions (minilm_retrieval).
    public var captions: Int = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case kind, buckets, minilmWidth = "minilm_width", hidden, dim, maxWords = "max_words", temperature, captions
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TextEncoderConfig()
        kind = try c.decodeIfPresent(TextEncoderKind.self, forKey: .kind) ?? .trigram
        buckets = try c.decodeIfPresent(Int.self, forKey: .buckets) ?? d.buckets
        minilmWidth = try c.decodeIfPresent(Int.self, forKey: .minilmWidth) ?? d.minilmWidth
        hidden = try c.decodeIfPresent(Int.self, forKey: .hidden) ?? d.hidden
        dim = try c.decodeIfPresent(Int.self, forKey: .dim) ?? d.dim
        maxWords = try c.decodeIfPresent(Int.self, forKey: .maxWords) ?? d.maxWords
        temperature = try c.decodeIfPresent(Float.self, forKey: .temperature) ?? d.temperature
        captions = try c.decodeIfPresent(Int.self, forKey: .captions) ?? d.captions
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        if kind != .trigram { try c.encode(kind, forKey: .kind); try c.encode(minilmWidth, forKey: .minilmWidth) }
        try c.encode(buckets, forKey: .buckets)
        try c.encode(hidden, forKey: .hidden)
        try c.encode(dim, forKey: .dim)
        try c.encode(maxWords, forKey: .maxWords)
        if kind == .minilmRetrieval { try c.encode(temperature, forKey: .temperature); try c.encode(captions, forKey: .captions) }
    }

    /// Width of the features the encoder reads (hashed bags or MiniLM embeddings).
    public var inputWidth: Int { kind == .trigram ? buckets : minilmWidth }

    /// Whether the encoder reads MiniLM embeddings.
    public var usesMiniLM: Bool { kind != .trigram }

    public func validate() throws {
        guard buckets >= 16, hidden > 0, dim > 0, maxWords > 0, minilmWidth > 0 else {
            throw ModelError.invalidConfig("text encoder: buckets >= 16, hidden, dim, max_words, minilm_width > 0 (got \(self))")
        }
        if kind == .minilmRetrieval {
            guard captions > 0, captions <= 1_000_000, temperature.isFinite, temperature > 0 else {
                throw ModelError.invalidConfig("text encoder minilm_retrieval: captions in 1...1000000 and a finite temperature > 0 (got \(captions), \(temperature))")
            }
        }
    }
}

/// Prompt -> description embedding, for any UTF-8 string.
///
/// kind `trigram`:
/// Features: the prompt is lower-cased, every character that is not a letter or digit becomes a
/// word break, and each word contributes one whole-word feature and its character trigrams with
/// boundary marks (`#ankle#` -> `#an`, `ank`, ...), each hashed (FNV-1a) into `buckets`. The
/// L2-normalised bag of counts goes through Linear -> SiLU -> Linear and the output is
/// L2-normalised. Unknown words still hit trigram buckets shared with known words; an empty
/// prompt gives the zero bag, whose embedding (the network's bias path) stands for
/// "unconditional". The first layer starts at zero, so buckets never seen in training add nothing.
///
/// kind `minilm`: the features are the prompt's MiniLM sentence embedding (384 wide, unit length),
/// through the same MLP (a projection trained against a trigram encoder's embeddings, so the
/// coalescer net keeps its description space). A prompt with no word pieces (empty, white space,
/// control characters only) gives the zero vector, i.e. "unconditional" as above. Other scripts and
/// emoji become word pieces or [UNK]; prompts past 254 word pieces are truncated.
///
/// kind `minilm_retrieval`: the same MiniLM features, then no MLP: `keys` (captions, 384) holds the
/// MiniLM embeddings of the source model's training captions and `values` (captions + 1, dim) the
/// source model's own embeddings of them, the last row being its empty-prompt embedding. A prompt's
/// embedding is sum_i softmax_i(keys_i . m / temperature) values_i, L2-normalised, summed in caption
/// order (the same bits whatever the batch); a prompt without word pieces gets the last row
/// (unconditional). Built by `coalesce train text-encoder --retrieval`; nothing is trained.
public final class TextEncoder: Layer {
    public let config: TextEncoderConfig
    let fc1: Linear?, fc2: Linear?
    /// MiniLM embeddings of the stored captions and their description embeddings (minilm_retrieval).
    public let keys: Tensor?, values: Tensor?
    /// The sentence encoder of a `minilm` encoder (shared, frozen; not among the parameters).
    public private(set) var minilm: MiniLM?
    /// Recent prompts' MiniLM embeddings (minilm).
    let minilmCache = PromptEmbeddingCache(capacity: 1024)

    public init(config: TextEncoderConfig, rng: inout RandomGenerator, minilm: MiniLM? = nil) throws {
        try config.validate()
        self.config = config
        if config.kind == .minilmRetrieval {
            fc1 = nil; fc2 = nil
            keys = Tensor(zeros: [config.captions, config.minilmWidth])
            values = Tensor(zeros: [config.captions + 1, config.dim])
        } else {
            let l1 = Linear(config.inputWidth, config.hidden, rng: &rng)
            if config.kind == .trigram { l1.zeroInit() }
            fc1 = l1
            fc2 = Linear(config.hidden, config.dim, rng: &rng)
            keys = nil; values = nil
        }
        if let minilm { try attach(minilm) }
    }

    /// Gives a MiniLM encoder its sentence encoder (loading does, from models/minilm).
    public func attach(_ minilm: MiniLM) throws {
        guard config.usesMiniLM else { throw ModelError.invalidConfig("a \(config.kind) text encoder takes no MiniLM") }
        guard minilm.config.hidden == config.minilmWidth else {
            throw ModelError.invalidConfig("MiniLM width \(minilm.config.hidden) != text_encoder.minilm_width \(config.minilmWidth)")
        }
        self.minilm = minilm
    }

    public var namedParameters: [(String, Tensor)] {
        if let keys, let values { return [("keys", keys), ("values", values)] }
        return nest("fc1", fc1!) + nest("fc2", fc2!)
    }

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

    /// Input features (B, inputWidth) for a batch of prompts: dense feature bags (trigram) or
    /// MiniLM sentence embeddings (minilm; zero rows for prompts without word pieces).
    public func featureMatrix(_ prompts: [String]) -> Tensor {
        if config.usesMiniLM {
            guard let minilm else { preconditionFailure("minilm text encoder used before attach(_:)") }
            let w = config.minilmWidth
            let t = Tensor(zeros: [prompts.count, w])
            for (i, p) in prompts.enumerated() {
                let e = minilmCache.embedding(p) {
                    minilm.tokenizer.encode(p).count > 2 ? minilm.embed([p]).array : [Float](repeating: 0, count: w)
                }
                e.withUnsafeBufferPointer { (t.data + i * w).update(from: $0.baseAddress!, count: w) }
            }
            return t
        }
        let t = Tensor(zeros: [prompts.count, config.buckets])
        for (i, p) in prompts.enumerated() {
            for (k, v) in features(p) { t.data[i * config.buckets + k] = v }
        }
        return t
    }

    /// Description embeddings (B, dim), unit length, with autograd for the MLP kinds (for training);
    /// minilm_retrieval records no gradient (it has nothing to train).
    public func forward(_ bags: Tensor) -> Tensor {
        if let keys, let values { return retrieve(bags, keys: keys, values: values) }
        let y = fc2!(fc1!(bags).silu())
        return y / y.square().sumLast().sqrt(eps: 1e-8)
    }

    /// minilm_retrieval: each row on its own, every sum in caption order.
    func retrieve(_ features: Tensor, keys: Tensor, values: Tensor) -> Tensor {
        let (b, w, d, n) = (features.shape[0], config.minilmWidth, config.dim, config.captions)
        precondition(features.shape == [b, w], "minilm_retrieval: features \(features.shape), expected [\(b), \(w)]")
        let scale = 1 / config.temperature
        let logits = Tensor(zeros: [b, n])
        withExtendedLifetime((features, keys)) {
            for i in 0..<b {
                let f = features.data + i * w
                for r in 0..<n {
                    let k = keys.data + r * w
                    var s: Float = 0
                    for j in 0..<w { s += f[j] * k[j] }
                    logits.data[i * n + r] = s * scale
                }
            }
        }
        let weights = GradMode.withDisabled { Tensor.softmaxLastDim(logits) }
        let out = Tensor(zeros: [b, d])
        withExtendedLifetime((features, weights, values)) {
            let v = values.data
            for i in 0..<b {
                let o = out.data + i * d, p = weights.data + i * n
                guard (0..<w).contains(where: { features.data[i * w + $0] != 0 }) else {   // no word pieces
                    o.update(from: v + n * d, count: d)                                    // unconditional
                    continue
                }
                for r in 0..<n {
                    for j in 0..<d { o[j] += p[r] * v[r * d + j] }
                }
                var norm: Float = 0
                for j in 0..<d { norm += o[j] * o[j] }
                norm = max(norm.squareRoot(), 1e-12)
                for j in 0..<d { o[j] /= norm }
            }
        }
        return out
    }

    /// Description embeddings (B, dim) of `prompts`.
    public func embed(_ prompts: [String]) -> Tensor { forward(featureMatrix(prompts)) }
}
