// CallbackLogHandler: a swift-log handler that hands each line to the host's cz_log_fn.
import CCoalesceAPI
import Logging

/// The host's callback and its user_data (both owned by the host, used as given).
final class CallbackLogSink: @unchecked Sendable {
    let callback: cz_log_fn
    let userData: UnsafeMutableRawPointer?

    init(callback: cz_log_fn, userData: UnsafeMutableRawPointer?) {
        self.callback = callback
        self.userData = userData
    }
}

struct CallbackLogHandler: LogHandler {
    let sink: CallbackLogSink
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// CZ_LOG_* for a swift-log level (trace counts as debug, notice as info, critical as error).
    static func level(_ l: Logger.Level) -> Int32 {
        switch l {
        case .trace, .debug: return CZ_LOG_DEBUG
        case .info, .notice: return CZ_LOG_INFO
        case .warning: return CZ_LOG_WARNING
        case .error, .critical: return CZ_LOG_ERROR
        }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        var text = event.message.description
        for key in all.keys.sorted() {
            text += " \(key)=\(all[key].map { "\($0)" } ?? "")"
        }
        text.withCString { sink.callback(Self.level(event.level), $0, sink.userData) }
    }
}
