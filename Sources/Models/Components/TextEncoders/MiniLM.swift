import Foundation
import Tensor

/// Configuration of `MiniLM`, stored as JSON in the metadata of `minilm.safetensors`
/// (scripts/convert-minilm.py writes it from the checkpoint's config). Keys are snake_case.
public struct MiniLMConfig: Codable, Equatable, Sendable {
    public var vocabSize = 30522
    public var hidden = 384
    public var layers = 6
    public var heads = 12
    public var intermediate = 1536
    public var maxPositions = 512
    public var typeVocabSize = 2
    public var layerNormEps: Float = 1e-12
    /// Most token ids per prompt, [CLS] and [SEP] included (sentence-transformers' max_seq_length).
    public var maxTokens = 256

    public init() {}

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hidden, layers, heads, intermediate, maxPositions = "max_positions"
        case typeVocabSize = "type_vocab_size", layerNormEps = "layer_norm_eps", maxTokens = "max_tokens"
    }

    public func validate() throws {
        guard vocabSize > 0, hidden > 0, layers > 0, heads > 0, hidden % heads == 0, intermediate > 0,
              typeVocabSize > 0, maxTokens >= 3, maxTokens <= maxPositions, layerNormEps > 0 else {
            throw ModelError.invalidConfig("minilm: bad config \(self)")
        }
    }
}

/// The all-MiniLM-L6-v2 sentence encoder (sentence-transformers): a BERT encoder (6 layers,
/// 384 wide, 12 heads, exact GELU, post-norm), mean pooling over the prompt's tokens and L2
/// normalisation. Inference only; parameters keep their checkpoint keys
/// (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`, ...).
///
/// Each prompt runs on its own (no padding), so its embedding never depends on the others in a
/// call. Long prompts are truncated to `config.maxTokens` tokens (see `WordPieceTokenizer`).
/// Matches the Python reference to 1e-4 (Tests/ModelsTests/MiniLMTests).
public final class MiniLM: Layer {
    public let config: MiniLMConfig
    public let tokenizer: WordPieceTokenizer
    let wordEmbeddings: Tensor      // (V, H)
    let positionEmbeddings: Tensor  // (P, H)
    let tokenTypeEmbeddings: Tensor // (2, H)
    let embeddingNorm: LayerNorm
    let layers: [BertLayer]

    /// The weights file and vocabulary inside a MiniLM directory (models/minilm).
    public static let weightsFile = "minilm.safetensors"
    public static let vocabFile = "vocab.txt"

    /// `minilm` beside the directory holding `modelFile` (models/coalescer/coalescer.safetensors ->
    /// models/minilm; the install layout's share/coalesce/models/minilm the same way).
    public static func directory(besideModelFile modelFile: String) -> String {
        let modelDir = (modelFile as NSString).deletingLastPathComponent
        let parent = ((modelDir.isEmpty ? "." : modelDir) as NSString).deletingLastPathComponent
        return ((parent.isEmpty ? "." : parent) as NSString).appendingPathComponent("minilm")
    }

    private final class WeakEntry { weak var model: MiniLM? }
    private static let cacheLock = NSLock()
    nonisolated(unsafe) private static var cache: [String: WeakEntry] = [:]

    /// One loaded instance per directory while any model holds it (the weights are read-only after
    /// loading, and every coalescer that uses MiniLM shares them). The cache holds it weakly: when
    /// the last model using it is unloaded (or its engine freed), its ~90 MB go with it.
    public static func shared(directory: String) throws -> MiniLM {
        let key = URL(fileURLWithPath: directory).standardizedFileURL.resolvingSymlinksInPath().path
        cacheLock.lock(); defer { cacheLock.unlock() }
        if let m = cache[key]?.model { return m }
        let m = try MiniLM(directory: directory)
        let entry = WeakEntry()
        entry.model = m
        cache = cache.filter { $0.value.model != nil }
        cache[key] = entry
        return m
    }

    /// Loads `directory`/minilm.safetensors and `directory`/vocab.txt (made by
    /// scripts/fetch-minilm.sh).
    public convenience init(directory: String) throws {
        let weights = (directory as NSString).appendingPathComponent(Self.weightsFile)
        guard FileManager.default.fileExists(atPath: weights) else {
            throw ModelError.invalidConfig("MiniLM weights \(weights) not found; run `make deps` (scripts/fetch-minilm.sh)")
        }
        let file = try SafeTensors.read(path: weights)
        guard let json = file.config else { throw ModelError.invalidConfig("\(weights): no config in the metadata") }
        let config: MiniLMConfig
        do { config = try JSONDecoder().decode(MiniLMConfig.self, from: Data(json.utf8)) } catch {
            throw ModelError.invalidConfig("\(weights): config: \(error)")
        }
        let tokenizer = try WordPieceTokenizer(vocabFile: (directory as NSString).appendingPathComponent(Self.vocabFile),
                                               maxTokens: config.maxTokens)
        try self.init(config: config, tokenizer: tokenizer, weights: file)
    }

    public init(config: MiniLMConfig, tokenizer: WordPieceTokenizer, weights: SafeTensors) throws {
        try config.validate()
        guard tokenizer.tokens.count == config.vocabSize else {
            throw ModelError.invalidConfig("minilm: vocabulary has \(tokenizer.tokens.count) tokens, config says \(config.vocabSize)")
        }
        self.config = config
        self.tokenizer = tokenizer
        func t(_ key: String, _ shape: [Int]) throws -> Tensor {
            guard weights.tensors[key] != nil else { throw ModelError.missingWeight(key) }
            let x = try weights.tensor(key)
            guard x.shape == shape else { throw ModelError.weightShape(key: key, expected: shape, got: x.shape) }
            return x
        }
        let h = config.hidden
        wordEmbeddings = try t("embeddings.word_embeddings.weight", [config.vocabSize, h])
        positionEmbeddings = try t("embeddings.position_embeddings.weight", [config.maxPositions, h])
        tokenTypeEmbeddings = try t("embeddings.token_type_embeddings.weight", [config.typeVocabSize, h])
        embeddingNorm = LayerNorm(weight: try t("embeddings.LayerNorm.weight", [h]),
                                  bias: try t("embeddings.LayerNorm.bias", [h]), eps: config.layerNormEps)
        layers = try (0..<config.layers).map { i in
            try BertLayer(config: config) { key, shape in try t("encoder.layer.\(i).\(key)", shape) }
        }
    }

    public var namedParameters: [(String, Tensor)] {
        [("embeddings.word_embeddings.weight", wordEmbeddings),
         ("embeddings.position_embeddings.weight", positionEmbeddings),
         ("embeddings.token_type_embeddings.weight", tokenTypeEmbeddings)]
            + nest("embeddings.LayerNorm", embeddingNorm) + nest("encoder.layer", layers)
    }

    /// The encoder's output for token ids (from `tokenizer.encode`): (T, hidden), one row per
    /// token, [CLS] and [SEP] included. Cross-attention context for a diffusion backend.
    public func tokenEmbeddings(ids: [Int]) -> Tensor {
        precondition(!ids.isEmpty && ids.count <= config.maxPositions, "MiniLM: 1...\(config.maxPositions) tokens, got \(ids.count)")
        return GradMode.withDisabled {
            let positions = Tensor.embedding(positionEmbeddings, indices: Array(0..<ids.count))     // (T, H)
            var x = Tensor.embedding(wordEmbeddings, indices: ids) + positions                    // (T, H)
            x = embeddingNorm(x + Tensor.embedding(tokenTypeEmbeddings, indices: [0]).reshaped([config.hidden]))
            for layer in layers { x = layer(x, heads: config.heads) }
            return x
        }
    }

    /// Token embeddings of a prompt (truncated as the tokenizer says), (T, hidden).
    public func tokenEmbeddings(_ prompt: String) -> Tensor { tokenEmbeddings(ids: tokenizer.encode(prompt)) }

    /// Sentence embeddings (B, hidden): the mean of each prompt's token embeddings, unit length.
    public func embed(_ prompts: [String]) -> Tensor {
        let h = config.hidden
        let out = Tensor(zeros: [prompts.count, h])
        for (b, prompt) in prompts.enumerated() {
            let tokens = tokenEmbeddings(prompt)                                                 // (T, H)
            let n = tokens.shape[0]
            let row = out.data + b * h
            withExtendedLifetime(tokens) {
                for t in 0..<n {
                    for j in 0..<h { row[j] += tokens.data[t * h + j] }
                }
            }
            var norm: Float = 0
            for j in 0..<h { row[j] /= Float(n); norm += row[j] * row[j] }
            let scale = 1 / max(norm.squareRoot(), 1e-12)
            for j in 0..<h { row[j] *= scale }
        }
        return out
    }
}

/// One BERT encoder layer (post-norm): x = LN(x + Wo·attn(Wq x, Wk x, Wv x));
/// x = LN(x + W2·gelu(W1 x)).
final class BertLayer: Layer {
    let query: Linear, key: Linear, value: Linear, attentionOutput: Linear
    let attentionNorm: LayerNorm
    let intermediate: Linear, output: Linear
    let outputNorm: LayerNorm

    init(config: MiniLMConfig, weight: (String, [Int]) throws -> Tensor) throws {
        let (h, m, eps) = (config.hidden, config.intermediate, config.layerNormEps)
        func linear(_ name: String, _ out: Int, _ inp: Int) throws -> Linear {
            Linear(weight: try weight("\(name).weight", [out, inp]), bias: try weight("\(name).bias", [out]))
        }
        query = try linear("attention.self.query", h, h)
        key = try linear("attention.self.key", h, h)
        value = try linear("attention.self.value", h, h)
        attentionOutput = try linear("attention.output.dense", h, h)
        attentionNorm = LayerNorm(weight: try weight("attention.output.LayerNorm.weight", [h]),
                                  bias: try weight("attention.output.LayerNorm.bias", [h]), eps: eps)
        intermediate = try linear("intermediate.dense", m, h)
        output = try linear("output.dense", h, m)
        outputNorm = LayerNorm(weight: try weight("output.LayerNorm.weight", [h]),
                               bias: try weight("output.LayerNorm.bias", [h]), eps: eps)
    }

    var namedParameters: [(String, Tensor)] {
        nest("attention.self.query", query) + nest("attention.self.key", key) + nest("attention.self.value", value)
            + nest("attention.output.dense", attentionOutput) + nest("attention.output.LayerNorm", attentionNorm)
            + nest("intermediate.dense", intermediate) + nest("output.dense", output)
            + nest("output.LayerNorm", outputNorm)
    }

    /// x: (T, H) -> (T, H).
    func callAsFunction(_ x: Tensor, heads: Int) -> Tensor {
        let (t, h) = (x.shape[0], x.shape[1])
        let q = query(x).reshaped([1, t, h]), k = key(x).reshaped([1, t, h]), v = value(x).reshaped([1, t, h])
        let a = Tensor.attention(q: q, k: k, v: v, heads: heads).reshaped([t, h])             // (T, H)
        let y = attentionNorm(x + attentionOutput(a))                                          // (T, H)
        return outputNorm(y + output(intermediate(y).geluErf()))                               // (T, H)
    }
}
