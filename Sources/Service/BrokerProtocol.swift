// BrokerProtocol: what a daemon and `coalesced broker` say to each other besides the client
// traffic they carry (a Majordomo-style worker protocol, ZeroMQ Guide chapter 4, cut down).
//
// The daemon's connected ROUTER socket names itself (ZMQ_ROUTING_ID, unique per process) and the
// broker ("broker", ZMQ_CONNECT_ROUTING_ID), so either side can address the other. Client traffic
// keeps its envelope: broker -> daemon [client identity, (empty delimiter), Request]; daemon ->
// broker [client identity, (empty delimiter), Reply]. A control message starts with an empty frame
// and the signature instead:
//   daemon -> broker  ["", "CZW1", "HEARTBEAT", capacity]   every `heartbeatInterval`
// The first heartbeat registers the daemon; `capacity` is how many requests it wants in flight
// (0 while draining: send it nothing new). A daemon silent for `heartbeatLiveness` intervals is
// dead: the broker answers UNAVAILABLE for every request it held. Heartbeats only flow from the
// daemons: the broker needs to know who is alive, and a daemon needs nothing from a broker
// (ZeroMQ reconnects by itself, and the next heartbeat registers the daemon with a restarted one).
public enum BrokerProtocol {
    /// The routing id daemons give the broker on connect.
    public static let brokerRoutingID: [UInt8] = Array("broker".utf8)
    public static let signature: [UInt8] = Array("CZW1".utf8)
    public static let heartbeat: [UInt8] = Array("HEARTBEAT".utf8)
    public static let heartbeatInterval: Duration = .milliseconds(250)
    /// Missed heartbeats after which a daemon is taken for dead.
    public static let heartbeatLiveness = 4

    /// The frames of a heartbeat carrying `capacity` (after the routing frame).
    public static func heartbeatFrames(capacity: Int) -> [[UInt8]] {
        [[], signature, heartbeat, Array(String(capacity).utf8)]
    }

    /// The capacity of a heartbeat (frames after the routing frame), nil if these frames are not
    /// a control message.
    public static func parseHeartbeat(_ frames: ArraySlice<[UInt8]>) -> Int?? {
        guard frames.count >= 2, frames[frames.startIndex].isEmpty,
              frames[frames.startIndex + 1] == signature else { return nil }
        guard frames.count == 4, frames[frames.startIndex + 2] == heartbeat,
              let n = Int(String(decoding: frames[frames.startIndex + 3], as: UTF8.self)), n >= 0 else {
            return .some(nil)  // a control message, but not one this version knows
        }
        return .some(n)
    }
}
