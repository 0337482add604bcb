// `coalesced broker`: ZeroMQ's own proxy between clients and several daemons (scale-out).
// Clients connect to the frontend (ROUTER) as they would to one daemon; daemons started with
// `coalesced serve --connect <backend>` connect to the backend (DEALER), which spreads requests
// over them. A killed daemon's requests get no reply: clients retry on timeout (lazy pirate,
// coalesce_client.Client(retries=...)), and the broker sends the retry to a live daemon.
import ArgumentParser
import CZMQ
import Foundation

struct Broker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Proxy clients (frontend ROUTER) to daemons (backend DEALER) with zmq_proxy.")

    @Option(help: "Endpoint clients connect to.")
    var frontend: String = "tcp://127.0.0.1:5555"

    @Option(help: "Endpoint daemons connect to (coalesced serve --connect ...).")
    var backend: String = "tcp://127.0.0.1:5556"

    func run() throws {
        guard let ctx = zmq_ctx_new(), let front = zmq_socket(ctx, ZMQ_ROUTER), let back = zmq_socket(ctx, ZMQ_DEALER) else {
            throw ValidationError("zmq: cannot create sockets: \(String(cString: zmq_strerror(zmq_errno())))")
        }
        var zero: Int32 = 0
        for s in [front, back] {
            zmq_setsockopt(s, ZMQ_SNDHWM, &zero, 4)
            zmq_setsockopt(s, ZMQ_RCVHWM, &zero, 4)
        }
        guard zmq_bind(front, frontend) == 0 else {
            throw ValidationError("zmq_bind(\(frontend)): \(String(cString: zmq_strerror(zmq_errno())))")
        }
        guard zmq_bind(back, backend) == 0 else {
            throw ValidationError("zmq_bind(\(backend)): \(String(cString: zmq_strerror(zmq_errno())))")
        }
        FileHandle.standardError.write(Data("coalesced broker: frontend \(frontend), backend \(backend)\n".utf8))
        // Runs until the process is signalled (SIGTERM/SIGINT end it; the broker holds no work).
        zmq_proxy(front, back, nil)
    }
}
