import Foundation

/// BERT's uncased WordPiece tokenizer, as Hugging Face `tokenizers` runs it for
/// all-MiniLM-L6-v2 (`BertNormalizer` with clean_text, handle_chinese_chars, strip_accents and
/// lowercase; `BertPreTokenizer`; `WordPiece` with "##" continuations and at most 100 characters
/// a word; "[CLS] ... [SEP]"). Works on Unicode scalars, as the reference works on Rust `char`s.
///
/// 1. Clean: NUL, U+FFFD and "other" characters (categories Cc, Cf, Cs, Co, Cn; not tab, newline,
///    carriage return) are removed; white space becomes a space.
/// 2. CJK ideographs get a space on either side (each becomes a word).
/// 3. Accents: canonical decomposition (NFD), then every mark (Mn, Mc, Me) is removed.
/// 4. Lower case, character by character (no context rules: Σ is always σ).
/// 5. Words: split at white space; every punctuation character (ASCII punctuation or P*) is a word.
/// 6. WordPiece: longest vocabulary match first; a word with no full cover, or longer than 100
///    characters, is [UNK].
/// Truncation: at most `maxTokens` ids including [CLS] and [SEP] (256 for all-MiniLM-L6-v2: the
/// first 254 word pieces of the prompt count, the rest is ignored), as sentence-transformers does.
///
/// Vocabulary lookups compare scalars exactly (as the reference compares bytes), not by Swift's
/// canonical String equality, under which the decomposed jamo of 운 would match the syllable.
public struct WordPieceTokenizer: Sendable {
    let vocab: [[UInt32]: Int]
    public let tokens: [String]
    public let maxTokens: Int
    public let maxCharsPerWord = 100
    public let cls: Int, sep: Int, unk: Int

    /// `vocabText`: one token a line; its id is the line number from 0.
    public init(vocabText: String, maxTokens: Int) throws {
        var v: [[UInt32]: Int] = [:]
        var list = vocabText.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            line.hasSuffix("\r") ? String(line.dropLast()) : String(line)
        }
        if list.last == "" { list.removeLast() }
        for (i, t) in list.enumerated() where v[Self.key(t)] == nil { v[Self.key(t)] = i }
        guard let cls = v[Self.key("[CLS]")], let sep = v[Self.key("[SEP]")], let unk = v[Self.key("[UNK]")] else {
            throw ModelError.invalidConfig("WordPiece vocabulary lacks [CLS], [SEP] or [UNK] (\(list.count) tokens)")
        }
        guard maxTokens >= 3 else { throw ModelError.invalidConfig("max_tokens must be >= 3, got \(maxTokens)") }
        self.vocab = v
        self.tokens = list
        self.maxTokens = maxTokens
        self.cls = cls; self.sep = sep; self.unk = unk
    }

    public init(vocabFile: String, maxTokens: Int) throws {
        let text: String
        do { text = try String(contentsOfFile: vocabFile, encoding: .utf8) } catch {
            throw ModelError.invalidConfig("cannot read WordPiece vocabulary \(vocabFile): \(error.localizedDescription)")
        }
        try self.init(vocabText: text, maxTokens: maxTokens)
    }

    /// Token ids of `text`: [CLS], at most maxTokens - 2 word pieces, [SEP].
    public func encode(_ text: String) -> [Int] {
        var ids = [cls]
        let budget = maxTokens - 2
        for word in words(text) {
            for id in wordPieces(word) {
                if ids.count - 1 >= budget { break }
                ids.append(id)
            }
            if ids.count - 1 >= budget { break }
        }
        ids.append(sep)
        return ids
    }

    /// The id of a vocabulary entry (exact scalars), or nil.
    public func id(of token: String) -> Int? { vocab[Self.key(token)] }

    static func key(_ s: String) -> [UInt32] { s.unicodeScalars.map(\.value) }

    /// The vocabulary strings of `ids`.
    public func strings(_ ids: [Int]) -> [String] { ids.map { $0 >= 0 && $0 < tokens.count ? tokens[$0] : "[UNK]" } }

    /// Steps 1-5: the normalised words of `text`, each an array of scalars.
    func words(_ text: String) -> [[Unicode.Scalar]] {
        // 1 + 2: clean and space CJK ideographs.
        var cleaned = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            if s.value == 0 || s.value == 0xFFFD || Self.isControl(s) { continue }
            if Self.isWhitespace(s) { cleaned.append(" "); continue }
            if Self.isCJK(s) { cleaned.append(" "); cleaned.append(s); cleaned.append(" ") } else { cleaned.append(s) }
        }
        // 3 + 4: NFD, drop marks, lower-case each scalar.
        var normal: [Unicode.Scalar] = []
        for s in String(cleaned).decomposedStringWithCanonicalMapping.unicodeScalars {
            switch s.properties.generalCategory {
            case .nonspacingMark, .spacingMark, .enclosingMark: continue
            default: normal.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
            }
        }
        // 5: white space splits, punctuation stands alone.
        var out: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        for s in normal {
            if s.properties.isWhitespace {
                if !current.isEmpty { out.append(current); current = [] }
            } else if Self.isPunctuation(s) {
                if !current.isEmpty { out.append(current); current = [] }
                out.append([s])
            } else {
                current.append(s)
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Step 6 for one word.
    func wordPieces(_ word: [Unicode.Scalar]) -> [Int] {
        if word.count > maxCharsPerWord { return [unk] }
        let values = word.map(\.value)
        let hashes: [UInt32] = [35, 35]  // "##"
        var ids: [Int] = []
        var start = 0
        while start < values.count {
            var end = values.count
            var found: Int? = nil
            while start < end {
                let piece = start > 0 ? hashes + values[start..<end] : Array(values[start..<end])
                if let id = vocab[piece] { found = id; break }
                end -= 1
            }
            guard let id = found else { return [unk] }
            ids.append(id)
            start = end
        }
        return ids
    }

    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == "\t" || s == "\n" || s == "\r" || s.properties.isWhitespace
    }

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch s.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        if s.isASCII, (33...47).contains(s.value) || (58...64).contains(s.value) || (91...96).contains(s.value)
            || (123...126).contains(s.value) { return true }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    /// The CJK ideograph blocks BERT treats as one word each.
    static func isCJK(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
             0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F: return true
        default: return false
        }
    }
}
