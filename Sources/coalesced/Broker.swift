// `coalesced broker`: one endpoint for clients in front of several daemons (scale-out). Clients
// connect to the frontend as they would to one daemon; daemons started with
// `coalesced serve --endpoint "" --connect <backend>` register with the backend and send
// heartbeats. Routing, cancel and failure handling: Service's BrokerLoop (protocol: BrokerProtocol).
import ArgumentParser
import Dispatch
import Foundation
import Service

struct Broker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Route clients (frontend) to daemons (backend) by free capacity; cancels reach the daemon running their target.",
        discussion: """
        Daemons connect with `coalesced serve --endpoint "" --connect <backend>`. A daemon that stops \
        sending heartbeats is dropped and every request it held is answered UNAVAILABLE (clients with \
        retries resend at once). SIGTERM/SIGINT: answer what the broker still holds UNAVAILABLE, exit 0.
        """)

    @Option(help: "Endpoint clients connect to.")
    var frontend: String = "tcp://127.0.0.1:5555"

    @Option(help: "Endpoint daemons connect to (coalesced serve --connect ...).")
    var backend: String = "tcp://127.0.0.1:5556"

    @Option(help: "Most requests waiting in the broker while every daemon is full; then RESOURCE_EXHAUSTED.")
    var maxQueue: Int = 10000

    @Option(help: "Largest request accepted, in bytes (as coalesced serve --max-message-bytes).")
    var maxMessageBytes: Int = 1 << 20

    @Option(help: "CurveZMQ: file holding the broker's Z85 secret key (CURVE on both tcp endpoints; daemons pass its public key as --curve-broker-key).")
    var curveSecretKeyFile: String?

    @Option(help: "CurveZMQ: allow-list file, one \"<Z85 public key>\" per line: clients and daemons.")
    var curveClients: String?

    func validate() throws {
        guard maxQueue >= 1, maxMessageBytes >= 64 else { throw ValidationError("--max-queue >= 1, --max-message-bytes >= 64") }
        guard (curveSecretKeyFile == nil) == (curveClients == nil) else {
            throw ValidationError("--curve-secret-key-file and --curve-clients go together")
        }
    }

    func run() throws {
        let curve = try curveSecretKeyFile.map { try CurveConfiguration.load(secretKeyFile: $0, clientsFile: curveClients ?? "") }
        let log: (String) -> Void = { FileHandle.standardError.write(Data("coalesced broker: \($0)\n".utf8)) }
        let loop = BrokerLoop(options: .init(frontend: frontend, backend: backend, curve: curve, maxQueue: maxQueue,
                                             maxMessageBytes: maxMessageBytes), log: log)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler { loop.stop() }
            src.resume()
            sources.append(src)
        }
        try loop.run {
            log("frontend \(frontend), backend \(backend)\(curve == nil ? "" : ", CURVE on")")
        }
        withExtendedLifetime(sources) {}
    }
}
