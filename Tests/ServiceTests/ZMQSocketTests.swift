// ZMQSocket: whole multipart messages both ways, options read back as set, a receive that finds
// nothing, and errors that name the call.
import CZMQ
import Foundation
import Service
import XCTest

final class ZMQSocketTests: XCTestCase {
    /// A fresh context, terminated after the test (its sockets closed first).
    private func context() -> UnsafeMutableRawPointer {
        let ctx = zmq_ctx_new()!
        addTeardownBlock { zmq_ctx_term(ctx) }
        return ctx
    }

    private func socket(_ ctx: UnsafeMutableRawPointer, _ type: Int32) throws -> ZMQSocket {
        let s = try ZMQSocket(context: ctx, type: type)
        try s.setLinger(milliseconds: 0)
        addTeardownBlock { s.close() }
        return s
    }

    func testMultipartMessagesArriveWholeBothWays() throws {
        let ctx = context()
        let router = try socket(ctx, ZMQ_ROUTER)
        try router.bind("inproc://zmq-socket-test")
        let dealer = try socket(ctx, ZMQ_DEALER)
        try dealer.setRoutingID(Array("client-1".utf8))
        try dealer.connect("inproc://zmq-socket-test")

        let parts: [[UInt8]] = [[], Array("hello".utf8), [0, 1, 0, 255], []]
        try dealer.send(parts: parts)
        var items = [router.pollItem()]
        XCTAssertEqual(zmq_poll(&items, 1, 2000), 1)
        let got = try XCTUnwrap(router.receive(dontWait: true))
        XCTAssertEqual(got, [Array("client-1".utf8)] + parts)

        try router.send(parts: [Array("client-1".utf8), Array("reply".utf8), [7]], dontWait: true)
        try dealer.setReceiveTimeout(milliseconds: 2000)
        XCTAssertEqual(dealer.receive(), [Array("reply".utf8), [7]])
    }

    func testReceiveMessageKeepsAtMostThePartsAndBytesAskedFor() throws {
        let ctx = context()
        let a = try socket(ctx, ZMQ_PAIR), b = try socket(ctx, ZMQ_PAIR)
        try a.bind("inproc://zmq-socket-limits")
        try b.connect("inproc://zmq-socket-limits")
        try a.send(parts: [[1, 2, 3, 4], [5], [6, 7, 8, 9, 10], [11], [12]])
        try b.setReceiveTimeout(milliseconds: 2000)
        let m = try XCTUnwrap(b.receiveMessage(keepParts: 3, maxPartBytes: 2))
        XCTAssertEqual(m.count, 5)
        // The first part is kept whatever its size (a routing id); later ones over the limit are emptied.
        XCTAssertEqual(m.parts, [[1, 2, 3, 4], [5], []])
        XCTAssertEqual(m.oversize, 5)
        XCTAssertNil(m.property)
    }

    func testReceiveWithoutWaitingOnAnEmptySocketIsNil() throws {
        let ctx = context()
        let s = try socket(ctx, ZMQ_DEALER)
        try s.bind("inproc://zmq-socket-empty")
        XCTAssertNil(s.receive(dontWait: true))
        try s.setReceiveTimeout(milliseconds: 10)
        XCTAssertNil(s.receive())
    }

    func testOptionsReadBackAsSet() throws {
        let ctx = context()
        let s = try socket(ctx, ZMQ_ROUTER)
        try s.setLinger(milliseconds: 1234)
        try s.setSendHighWaterMark(0)
        try s.setReceiveHighWaterMark(10000)
        try s.setMaxMessageSize(4 << 20)
        try s.setRoutingID(Array("daemon-7".utf8))
        try s.setZAPDomain("coalesce")
        XCTAssertEqual(try s.intOption(ZMQ_LINGER), 1234)
        XCTAssertEqual(try s.intOption(ZMQ_SNDHWM), 0)
        XCTAssertEqual(try s.intOption(ZMQ_RCVHWM), 10000)
        XCTAssertEqual(try s.int64Option(ZMQ_MAXMSGSIZE), 4 << 20)
        XCTAssertEqual(try s.bytesOption(ZMQ_ROUTING_ID), Array("daemon-7".utf8))
        XCTAssertEqual(try s.stringOption(ZMQ_ZAP_DOMAIN), "coalesce")
        XCTAssertEqual(try s.intOption(ZMQ_TYPE), ZMQ_ROUTER)
        try s.bind("tcp://127.0.0.1:0")
        let bound = try s.lastEndpoint
        XCTAssertTrue(bound.hasPrefix("tcp://127.0.0.1:") && !bound.hasSuffix(":0"), bound)
    }

    func testCurveKeysAreTakenInZ85() throws {
        let ctx = context()
        let server = try CurveConfiguration.keyPair(), client = try CurveConfiguration.keyPair()
        let s = try socket(ctx, ZMQ_DEALER)
        try s.setCurveClient(serverKey: server.publicKey, publicKey: client.publicKey, secretKey: client.secretKey)
        XCTAssertEqual(try s.stringOption(ZMQ_CURVE_SERVERKEY, capacity: 41), server.publicKey)
        XCTAssertThrowsError(try s.setOption(ZMQ_CURVE_SECRETKEY, z85Key: "too short")) { error in
            XCTAssertTrue("\(error)".hasPrefix("zmq_setsockopt(ZMQ_CURVE_SECRETKEY) failed: "), "\(error)")
        }
    }

    func testErrorsNameTheCallAndCloseIsIdempotent() throws {
        let ctx = context()
        let s = try socket(ctx, ZMQ_ROUTER)
        XCTAssertThrowsError(try s.bind("nonsense://here")) { error in
            guard case ServiceError.system(let call, let e) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(call, "zmq_bind(nonsense://here)")
            XCTAssertEqual(e, EPROTONOSUPPORT)
            XCTAssertEqual("\(error)", "zmq_bind(nonsense://here) failed: \(String(cString: zmq_strerror(e))) (errno \(e))")
        }
        s.close()
        s.close()
        XCTAssertNil(s.handle)
        XCTAssertNil(s.receive(dontWait: true))
        XCTAssertThrowsError(try s.setLinger(milliseconds: 0)) { error in
            guard case ServiceError.system(let call, let e) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(call, "zmq_setsockopt(ZMQ_LINGER)")
            XCTAssertEqual(e, ENOTSOCK)
        }
    }
}
