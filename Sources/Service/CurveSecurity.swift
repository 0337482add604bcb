// CurveSecurity: optional CurveZMQ encryption and authentication for tcp endpoints, with a ZAP
// handler (RFC 27) that admits only allow-listed client public keys and marks admin keys.
import CZMQ
import Foundation

/// CurveZMQ settings: the server's secret key and the client keys allowed in.
public struct CurveConfiguration: Sendable, Equatable {
    /// The server's secret key, Z85 (40 characters).
    public var serverSecretKey: String
    /// Allowed client public keys (Z85) -> whether the key may load/unload models.
    public var clients: [String: Bool]
    /// The broker's public key (Z85) for endpoints the daemon connects to (`--connect`): there the
    /// daemon is the CURVE client, with its own key pair (the secret key above); nil = none given.
    public var brokerPublicKey: String?

    /// ZAP User-Id given to admin keys (checked on every message from them).
    static let adminUserID = "admin"
    static let clientUserID = "client"
    /// The ZAP domain of every CURVE server socket (the daemon's and the broker's).
    static let zapDomain = "coalesce"

    public init(serverSecretKey: String, clients: [String: Bool]) {
        self.serverSecretKey = serverSecretKey
        self.clients = clients
    }

    /// Reads a secret-key file (first 40 non-space characters) and an allow-list file (one
    /// "<Z85 public key> [admin]" per line; lines starting with "# " are comments (none inline:
    /// '#' is a Z85 digit, so a key may start with it).
    public static func load(secretKeyFile: String, clientsFile: String) throws -> CurveConfiguration {
        let secret = try String(contentsOfFile: secretKeyFile, encoding: .utf8)
            .split(whereSeparator: { $0.isWhitespace }).first.map(String.init) ?? ""
        guard secret.utf8.count == 40 else {
            throw ServiceError.configuration("\(secretKeyFile): expected a 40-character Z85 secret key")
        }
        var clients: [String: Bool] = [:]
        for (n, line) in try String(contentsOfFile: clientsFile, encoding: .utf8).split(separator: "\n").enumerated() {
            let words = line.split(whereSeparator: { $0.isWhitespace })
            guard let key = words.first, !(key.hasPrefix("#") && key.utf8.count != 40) else { continue }
            guard key.utf8.count == 40, words.count <= 2, words.count == 1 || words[1] == "admin" else {
                throw ServiceError.configuration("\(clientsFile):\(n + 1): expected \"<40-character Z85 public key> [admin]\"")
            }
            clients[String(key)] = words.count == 2
        }
        return CurveConfiguration(serverSecretKey: secret, clients: clients)
    }

    /// A new key pair (public, secret), Z85.
    public static func keyPair() throws -> (publicKey: String, secretKey: String) {
        var pub = [CChar](repeating: 0, count: 41)
        var sec = [CChar](repeating: 0, count: 41)
        try zmqCall("zmq_curve_keypair") { zmq_curve_keypair(&pub, &sec) }
        return (String(cString: pub), String(cString: sec))
    }

    /// The public key (Z85) of a secret key (Z85).
    public static func publicKey(ofSecret secret: String) throws -> String {
        var pub = [CChar](repeating: 0, count: 41)
        try zmqCall("zmq_curve_public") { zmq_curve_public(&pub, secret) }
        return String(cString: pub)
    }
}

/// Answers ZAP requests on inproc://zeromq.zap.01 (polled by the Service's I/O thread, or the
/// broker's loop).
public final class ZAPHandler {
    public let socket: ZMQSocket
    private let config: CurveConfiguration
    private var z85ToKey: [String: Bool] = [:]
    private(set) var denied: UInt64 = 0

    public init(context: UnsafeMutableRawPointer, config: CurveConfiguration) throws {
        guard zmq_has("curve") != 0 else {
            throw ServiceError.configuration("this libzmq was built without CURVE support")
        }
        socket = try ZMQSocket(context: context, type: ZMQ_REP)
        self.config = config
        try socket.bind("inproc://zeromq.zap.01")
    }

    public func close() { socket.close() }

    /// Handles every waiting ZAP request. - Returns: the denied peers' addresses (for logging).
    public func handleAll() -> [String] {
        var deniedNow: [String] = []
        while let frames = socket.receive(dontWait: true) {
            // version, request id, domain, address, identity, mechanism, credentials...
            let text = { (i: Int) -> String in i < frames.count ? String(decoding: frames[i], as: UTF8.self) : "" }
            let requestID = frames.count > 1 ? frames[1] : []
            var status = "400", reason = "denied", user = ""
            if text(5) == "CURVE", frames.count >= 7, frames[6].count == 32 {
                var z85 = [CChar](repeating: 0, count: 41)
                _ = frames[6].withUnsafeBufferPointer { zmq_z85_encode(&z85, $0.baseAddress, 32) }
                if let admin = config.clients[String(cString: z85)] {
                    status = "200"
                    reason = "OK"
                    user = admin ? CurveConfiguration.adminUserID : CurveConfiguration.clientUserID
                } else {
                    reason = "client key not in the allow-list"
                }
            } else if text(5) == "NULL" {
                status = "200"
                reason = "OK"
            } else {
                reason = "mechanism \(text(5)) not accepted"
            }
            if status != "200" {
                denied += 1
                deniedNow.append("\(text(3)) (\(reason))")
            }
            let reply: [[UInt8]] = [Array("1.0".utf8), requestID, Array(status.utf8), Array(reason.utf8), Array(user.utf8), []]
            try? socket.send(parts: reply)
        }
        return deniedNow
    }
}
