// StatusServer: coalesced's optional read-only HTTP endpoint for operators (`--http`):
// /metrics (Prometheus text format), /healthz (live) and /readyz (ready to take requests).
import NIOCore
import NIOHTTP1
import NIOPosix

/// What the status server reads; each closure is called on the server's event loop thread.
public struct StatusSource: Sendable {
    /// The Prometheus text exposition (version 0.0.4).
    public var metrics: @Sendable () -> String
    /// Whether the daemon takes requests, and why not when it does not.
    public var readiness: @Sendable () -> (ready: Bool, reason: String)

    public init(metrics: @escaping @Sendable () -> String,
                readiness: @escaping @Sendable () -> (ready: Bool, reason: String)) {
        self.metrics = metrics
        self.readiness = readiness
    }
}

/// An HTTP/1.1 server (SwiftNIO, one event-loop thread) answering GET and HEAD on /metrics,
/// /healthz and /readyz; every other path is 404, every other method 405. It never changes the
/// daemon's state.
public final class StatusServer: @unchecked Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel
    /// The bound address as "host:port" (port 0 resolved).
    public let boundAddress: String

    /// Binds `address` ("HOST:PORT", "[V6]:PORT", ":PORT" or "PORT"; no host means 127.0.0.1).
    public init(address: String, source: StatusSource) throws {
        let (host, port) = try StatusServer.parse(address)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 64)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { ch in
                    ch.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                        ch.pipeline.addHandler(StatusHandler(source: source))
                    }
                }
                .childChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw StatusServerError.bind(address, "\(error)")
        }
        let local = channel.localAddress
        let shownHost = host.contains(":") ? "[\(host)]" : host
        boundAddress = "\(shownHost):\(local?.port ?? port)"
    }

    /// Checks an address as `init` reads it, without binding (coalesced checks --http before it
    /// starts anything). - Throws: `StatusServerError.address`.
    public static func validate(address: String) throws {
        _ = try parse(address)
    }

    /// Stops listening and closes open connections.
    public func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    /// Splits an address into host and port; the host defaults to the loopback address.
    static func parse(_ address: String) throws -> (String, Int) {
        var host = "127.0.0.1", portText = address
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]"), address[address.index(after: close)...].hasPrefix(":") else {
                throw StatusServerError.address(address)
            }
            host = String(address[address.index(after: address.startIndex)..<close])
            portText = String(address[address.index(close, offsetBy: 2)...])
        } else if let colon = address.lastIndex(of: ":") {
            if colon != address.startIndex { host = String(address[..<colon]) }
            portText = String(address[address.index(after: colon)...])
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else {
            throw StatusServerError.address(address)
        }
        return (host, port)
    }
}

/// Errors of the status server.
public enum StatusServerError: Error, CustomStringConvertible {
    /// The address is not HOST:PORT (or [V6]:PORT, :PORT, PORT) with a port in 0...65535.
    case address(String)
    /// Binding failed (address in use, not a local address, ...).
    case bind(String, String)

    public var description: String {
        switch self {
        case .address(let a): return "--http \(a): expected HOST:PORT, [V6]:PORT or PORT (port 0...65535)"
        case .bind(let a, let why): return "--http \(a): cannot listen: \(why)"
        }
    }
}

/// One connection's requests: answers each after its end part, keeping the connection open when
/// the client asks for keep-alive.
final class StatusHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let source: StatusSource
    private var head: HTTPRequestHead?

    init(source: StatusSource) { self.source = source }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break  // read-only: a body is ignored
        case .end:
            guard let h = head else { return }
            head = nil
            respond(context: context, to: h)
        }
    }

    private func respond(context: ChannelHandlerContext, to request: HTTPRequestHead) {
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        var status = HTTPResponseStatus.ok
        var body: String
        var contentType = "text/plain; charset=utf-8"
        var extra: [(String, String)] = []
        if request.method != .GET && request.method != .HEAD {
            status = .methodNotAllowed
            body = "only GET and HEAD\n"
            extra.append(("Allow", "GET, HEAD"))
        } else {
            switch path {
            case "/metrics":
                body = source.metrics()
                contentType = "text/plain; version=0.0.4; charset=utf-8"
            case "/healthz":
                body = "ok\n"
            case "/readyz":
                let r = source.readiness()
                status = r.ready ? .ok : .serviceUnavailable
                body = r.ready ? "ready\n" : "not ready: \(r.reason)\n"
            default:
                status = .notFound
                body = "not found; try /metrics, /healthz or /readyz\n"
            }
        }
        let bytes = Array(body.utf8)
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(bytes.count)),
                                   ("Cache-Control", "no-store")] + extra)
        let keepAlive = request.isKeepAlive
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(version: request.version, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        }
    }
}
