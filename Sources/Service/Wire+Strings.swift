// Checks of a Request's string fields in its raw bytes, before protobuf-c turns them into C
// strings: a C string ends at the first NUL (so "coalescer\0../x" would read as "coalescer"), and
// Swift would repair invalid UTF-8 (so an id "id\xff" would be echoed as "id\u{FFFD}"). Every
// string on the wire must be valid UTF-8 without NUL and within its field's limit.

extension Wire {
    /// A string field: its name in messages and its length limit in bytes (nil: checked elsewhere,
    /// e.g. the prompt against `EngineLimits.maxPromptBytes`).
    struct StringField {
        let name: String
        let maxBytes: Int?
    }

    /// The string fields of Request (field number -> field) and of its operations
    /// (Request field number -> (field number -> field)), as in proto/coalesce.proto.
    static let requestStrings: [UInt64: StringField] = [1: StringField(name: "id", maxBytes: maxIDBytes)]
    static let operationStrings: [UInt64: [UInt64: StringField]] = [
        10: [1: StringField(name: "generate.model", maxBytes: maxNameBytes),
             2: StringField(name: "generate.prompt", maxBytes: nil)],
        12: [1: StringField(name: "load_model.name", maxBytes: maxNameBytes)],
        13: [1: StringField(name: "unload_model.name", maxBytes: maxNameBytes)],
        16: [1: StringField(name: "cancel.target_id", maxBytes: maxIDBytes)],
    ]

    /// A problem with one string field of a Request.
    struct StringProblem: Equatable {
        /// True when the field is the request id (then the reply cannot echo it).
        var isID: Bool
        var message: String
    }

    /// Scans a Request's raw bytes and returns the first string field that is not valid UTF-8,
    /// holds a NUL byte or is over its limit; nil if all are fine. Every occurrence of a field
    /// is checked (protobuf keeps the last one). Bytes that do not parse stop the scan (the
    /// protobuf decoder reports those).
    static func checkStrings(_ bytes: UnsafeRawBufferPointer) -> StringProblem? {
        var problem: StringProblem?
        scanFields(bytes) { number, value in
            if let f = requestStrings[number] {
                if let m = check(value, f) { problem = StringProblem(isID: number == 1, message: m); return false }
            } else if let fields = operationStrings[number] {
                scanFields(value) { n, v in
                    if let f = fields[n], let m = check(v, f) { problem = StringProblem(isID: false, message: m) }
                    return problem == nil
                }
            }
            return problem == nil
        }
        // An invalid id wins: the reply must not echo it.
        if let p = problem, !p.isID, let idProblem = checkIDOnly(bytes) { return idProblem }
        return problem
    }

    private static func checkIDOnly(_ bytes: UnsafeRawBufferPointer) -> StringProblem? {
        var problem: StringProblem?
        scanFields(bytes) { number, value in
            if number == 1, let f = requestStrings[1], let m = check(value, f) {
                problem = StringProblem(isID: true, message: m)
            }
            return problem == nil
        }
        return problem
    }

    /// The message for a bad value of field `f`, or nil if it is valid.
    static func check(_ value: UnsafeRawBufferPointer, _ f: StringField) -> String? {
        if let limit = f.maxBytes, value.count > limit {
            return "\(f.name) is \(value.count) bytes; the limit is \(limit)"
        }
        if let nul = value.firstIndex(of: 0) {
            return "\(f.name) contains a NUL byte (at byte \(nul))"
        }
        var offset = 0
        var bad = false
        var parser = Unicode.UTF8.ForwardParser()
        var it = value.makeIterator()
        loop: while true {
            switch parser.parseScalar(from: &it) {
            case .valid(let scalar): offset += scalar.count
            case .emptyInput: break loop
            case .error(let length): _ = length; bad = true; break loop
            }
        }
        return bad ? "\(f.name) is not valid UTF-8 (at byte \(offset))" : nil
    }

    /// Calls `body(fieldNumber, value)` for every length-delimited field of a protobuf message
    /// until it returns false; other fields are skipped. Stops at bytes that do not parse.
    static func scanFields(_ bytes: UnsafeRawBufferPointer, _ body: (UInt64, UnsafeRawBufferPointer) -> Bool) {
        var i = 0
        func varint() -> UInt64? {
            var v: UInt64 = 0, shift: UInt64 = 0
            while i < bytes.count, shift < 64 {
                let b = bytes[i]
                i += 1
                v |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        while i < bytes.count {
            guard let tag = varint() else { return }
            switch tag & 7 {
            case 0: guard varint() != nil else { return }
            case 1: i += 8
            case 5: i += 4
            case 2:
                guard let len = varint(), len <= UInt64(bytes.count - i) else { return }
                let value = UnsafeRawBufferPointer(rebasing: bytes[i..<(i + Int(len))])
                i += Int(len)
                if !body(tag >> 3, value) { return }
            default: return  // groups: not in coalesce.v1
            }
        }
    }
}
