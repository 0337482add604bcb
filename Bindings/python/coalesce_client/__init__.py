"""coalesce_client: a Python client for the coalesced daemon (ZeroMQ + protobuf, coalesce.v1).

    from coalesce_client import Client
    with Client("tcp://127.0.0.1:5555") as c:
        result = c.generate("test-pattern", prompt="a shirt", seed=42, count=4)
        result.array()          # numpy uint8 array (count, height, width[, channels])
        result.save_png(0, "out.png")

Every request gets zero or more progress replies and exactly one final reply; failures raise
CoalesceError with the wire's code (coalesce_pb2.INVALID_ARGUMENT, ...) and message. On a timeout the
client drops its socket, reconnects and resends (the ZeroMQ guide's lazy-pirate pattern) up to
`retries` times: generation is deterministic, so a resent request gives the same images.
"""
from __future__ import annotations

import itertools
import os
import time
import zlib
import struct
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import zmq

from . import coalesce_pb2 as pb

__all__ = ["Client", "CoalesceError", "GenerateResult", "pb", "ERROR_NAMES"]

ERROR_NAMES = {v: k for k, v in pb.ErrorCode.items()}


class CoalesceError(Exception):
    """A final error reply (or a client-side timeout, code DEADLINE_EXCEEDED/UNAVAILABLE)."""

    def __init__(self, code: int, message: str, request_id: str = ""):
        super().__init__(f"{ERROR_NAMES.get(code, code)}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id

    @property
    def name(self) -> str:
        return ERROR_NAMES.get(self.code, str(self.code))


@dataclass
class GenerateResult:
    images: List[bytes]
    width: int
    height: int
    channels: int
    format: int
    model: str = ""
    backend: str = ""
    revision: str = ""
    generation: int = 0
    queue_ms: int = 0
    run_ms: int = 0
    batch_requests: int = 0
    progress: List[tuple] = field(default_factory=list)

    def array(self):
        """The images as a numpy uint8 array (count, height, width) or (count, height, width, channels)."""
        import numpy as np
        if self.format != pb.RAW:
            raise ValueError("array() needs format='raw' images")
        a = np.frombuffer(b"".join(self.images), dtype=np.uint8)
        shape = (len(self.images), self.height, self.width) + ((self.channels,) if self.channels > 1 else ())
        return a.reshape(shape)

    def png(self, index: int) -> bytes:
        """Image `index` as PNG bytes (encoded here when the reply carried raw pixels)."""
        if self.format == pb.PNG:
            return self.images[index]
        return _png(self.images[index], self.width, self.height, self.channels)

    def save_png(self, index: int, path: str) -> None:
        with open(path, "wb") as f:
            f.write(self.png(index))


def _png(raw: bytes, w: int, h: int, c: int) -> bytes:
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = b"".join(b"\x00" + raw[y * w * c:(y + 1) * w * c] for y in range(h))

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class Client:
    """A DEALER-socket client. Not thread-safe: use one Client per thread."""

    _ids = itertools.count(1)

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", timeout: float = 30.0, retries: int = 0,
                 context: Optional[zmq.Context] = None, server_key: Optional[str] = None,
                 public_key: Optional[str] = None, secret_key: Optional[str] = None):
        """server_key/public_key/secret_key (Z85 strings) enable CurveZMQ; a daemon with an
        allow-list silently refuses unknown keys (calls then time out)."""
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self._curve = (server_key, public_key, secret_key) if server_key else None
        self._ctx = context or zmq.Context.instance()
        self._prefix = f"{os.getpid()}-{id(self):x}-"
        self._sock = None
        self._connect()

    def _connect(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if self._curve:
            server, public, secret = self._curve
            self._sock.curve_serverkey = server.encode()
            self._sock.curve_publickey = public.encode()
            self._sock.curve_secretkey = secret.encode()
        self._sock.connect(self.endpoint)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- low level -------------------------------------------------------------------------

    def new_id(self) -> str:
        return self._prefix + str(next(self._ids))

    def send(self, request: pb.Request) -> str:
        """Sends a Request (an id is assigned when empty); returns its id."""
        if not request.id:
            request.id = self.new_id()
        self._sock.send(request.SerializeToString())
        return request.id

    def send_raw(self, data: bytes) -> None:
        """Sends arbitrary bytes as one frame (for tests of malformed input)."""
        self._sock.send(data)

    def recv(self, timeout: Optional[float] = None) -> Optional[pb.Reply]:
        """The next reply of any id, or None after `timeout` seconds."""
        t = self.timeout if timeout is None else timeout
        if not self._sock.poll(int(t * 1000)):
            return None
        reply = pb.Reply()
        reply.ParseFromString(self._sock.recv())
        return reply

    def call(self, request: pb.Request, on_progress: Optional[Callable[[int, int], None]] = None,
             timeout: Optional[float] = None) -> pb.Reply:
        """Sends `request` and returns its final reply (progress replies go to on_progress).
        Raises CoalesceError for an error reply, or after the timeout and `retries` resends
        (an UNAVAILABLE reply is resent at once while resends are left)."""
        t = self.timeout if timeout is None else timeout
        for attempt in range(self.retries + 1):
            rid = self.send(request)
            deadline = time.monotonic() + t
            while True:
                left = deadline - time.monotonic()
                reply = self.recv(max(left, 0)) if left > 0 else None
                if reply is None:
                    break
                if reply.id != rid:
                    continue  # a late reply to an abandoned attempt
                kind = reply.WhichOneof("kind")
                if kind == "progress":
                    if on_progress:
                        on_progress(reply.progress.step, reply.progress.total)
                    continue
                if kind == "error":
                    if reply.error.code == pb.UNAVAILABLE and attempt < self.retries:
                        break  # the daemon went away (a broker says so at once) or is draining: resend now
                    raise CoalesceError(reply.error.code, reply.error.message, rid)
                return reply
            if attempt < self.retries:
                self._connect()  # lazy pirate: drop the socket, reconnect, resend
        raise CoalesceError(pb.DEADLINE_EXCEEDED, f"no reply from {self.endpoint} within {t} s "
                                                   f"({self.retries + 1} attempt(s))", request.id)

    # ---- operations ------------------------------------------------------------------------

    def generate(self, model: str, prompt: str = "", seed: int = 0, steps: int = 0, count: int = 1,
                 guidance: float = 0.0, format: str = "raw", timeout_ms: int = 0,
                 on_progress: Optional[Callable[[int, int], None]] = None) -> GenerateResult:
        req = pb.Request()
        g = req.generate
        g.model, g.prompt, g.seed, g.steps, g.count, g.guidance = model, prompt, seed, steps, count, guidance
        g.format = pb.PNG if format == "png" else pb.RAW
        g.timeout_ms = timeout_ms
        seen = []

        def progress(step, total):
            seen.append((step, total))
            if on_progress:
                on_progress(step, total)

        g.want_progress = on_progress is not None
        reply = self.call(req, progress)
        if reply.WhichOneof("kind") != "images":
            raise CoalesceError(pb.INTERNAL, f"unexpected reply kind {reply.WhichOneof('kind')}")
        im = reply.images
        return GenerateResult(images=list(im.images), width=im.width, height=im.height, channels=im.channels,
                              format=im.format, model=im.model, backend=im.backend, revision=im.revision,
                              generation=im.generation, queue_ms=im.queue_ms, run_ms=im.run_ms,
                              batch_requests=im.batch_requests, progress=seen)

    def list_models(self) -> pb.ModelList:
        req = pb.Request()
        req.list_models.SetInParent()
        return self.call(req).models

    def load_model(self, name: str) -> pb.ModelInfo:
        req = pb.Request()
        req.load_model.name = name
        return self.call(req).model

    def unload_model(self, name: str) -> str:
        req = pb.Request()
        req.unload_model.name = name
        return self.call(req).ack.message

    def health(self) -> pb.Health:
        req = pb.Request()
        req.health.SetInParent()
        return self.call(req).health

    def metrics(self) -> pb.Metrics:
        req = pb.Request()
        req.metrics.SetInParent()
        return self.call(req).metrics

    def cancel(self, target_id: str) -> str:
        req = pb.Request()
        req.cancel.target_id = target_id
        return self.call(req).ack.message
