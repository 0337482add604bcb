import Foundation

/// Captions for Fashion-MNIST classes: class phrases times sentence templates.
///
/// Some templates are held out of text-encoder training to measure generalisation to phrasings
/// it never saw (reported as held-out nearest-class accuracy).
public enum Captions {
    /// Names and synonyms per class (index = Fashion-MNIST label). The first is the canonical prompt.
    public static let classPhrases: [[String]] = [
        ["t-shirt", "top", "tee", "t-shirt/top", "tshirt"],
        ["trousers", "trouser", "pants", "jeans"],
        ["pullover", "sweater", "jumper"],
        ["dress", "gown", "frock"],
        ["coat", "jacket", "overcoat"],
        ["sandal", "sandals", "flip-flop"],
        ["shirt", "blouse", "button-up shirt"],
        ["sneaker", "sneakers", "trainers", "running shoe"],
        ["bag", "handbag", "purse", "tote bag"],
        ["ankle boot", "boots", "ankle boots", "boot"],
    ]

    /// Templates used to train the text encoder ("{}" is replaced by a class phrase).
    public static let trainTemplates = [
        "{}", "a {}", "a photo of a {}", "an image of a {}", "a picture of a {}",
        "a black and white photo of a {}", "a {} on a dark background", "grayscale {}",
        "a small {}", "product photo: {}",
    ]

    /// Templates never seen in training (held out for the generalisation measurement).
    public static let heldOutTemplates = [
        "a drawing of a {}", "this is a {}", "show me a {}", "my favourite {}!", "a low-resolution {}",
    ]

    /// The canonical prompt for a class ("ankle boot").
    public static func prompt(forClass c: Int) -> String { classPhrases[c][0] }

    /// Fills a template with a phrase.
    public static func fill(_ template: String, _ phrase: String) -> String {
        template.replacingOccurrences(of: "{}", with: phrase)
    }

    /// All (caption, class) pairs from `templates`.
    public static func all(templates: [String]) -> [(String, Int)] {
        var out: [(String, Int)] = []
        for (c, phrases) in classPhrases.enumerated() {
            for p in phrases { for t in templates { out.append((fill(t, p), c)) } }
        }
        return out
    }
}
