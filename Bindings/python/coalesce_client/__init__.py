"""coalesce_client: a Python client for the coalesced daemon (ZeroMQ + protobuf, coalesce.v1).

    from coalesce_client import Client
    with Client("tcp://127.0.0.1:5555") as c:
        result = c.generate("test-pattern", prompt="a shirt", seed=42, count=4)
        result.array()          # numpy uint8 array (count, height, width[, channels])
        result.to_pil(0)        # a PIL image (Pillow)
        result.save_png(0, "out.png")
        c.health().ready        # list_models(), health(), metrics(): dataclasses

``coalesce_client.aio.Client`` has the same methods as coroutines, for asyncio programs.

Every request gets zero or more progress replies and exactly one final reply; failures raise
CoalesceError with the wire's code (ErrorCode.INVALID_ARGUMENT, ...) and message. On a timeout the
client drops its socket, reconnects and resends (the ZeroMQ guide's lazy-pirate pattern) up to
`retries` times: generation is deterministic, so a resent request gives the same images.
"""
from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable, Optional

import zmq

from ._types import (pb, ERROR_NAMES, CoalesceError, ErrorCode, GenerateResult, Health, HistogramBucket, Metrics,
                     ModelCounts, ModelFailure, ModelInfo, ModelList, OutcomeCount, WorkerProcess,
                     generate_request, generate_result,
                     reply_field, simple_request)

__all__ = ["Client", "CoalesceError", "ErrorCode", "GenerateResult", "ModelInfo", "ModelList", "Health",
           "Metrics", "OutcomeCount", "HistogramBucket", "ModelCounts", "ModelFailure", "WorkerProcess", "pb",
           "ERROR_NAMES"]

#: on_progress(step, total) for progress replies.
ProgressFn = Callable[[int, int], None]


class Client:
    """A DEALER-socket client. Not thread-safe: use one Client per thread."""

    _ids = itertools.count(1)

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", timeout: float = 30.0, retries: int = 0,
                 context: Optional[zmq.Context[Any]] = None, server_key: Optional[str] = None,
                 public_key: Optional[str] = None, secret_key: Optional[str] = None):
        """server_key/public_key/secret_key (Z85 strings) enable CurveZMQ; a daemon with an
        allow-list silently refuses unknown keys (calls then time out)."""
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self._curve = (server_key, public_key, secret_key) if server_key else None
        self._ctx = context or zmq.Context.instance()
        self._prefix = f"{os.getpid()}-{id(self):x}-"
        self._sock: Optional[zmq.Socket[bytes]] = None
        self._connect()

    def _connect(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
        sock: zmq.Socket[bytes] = self._ctx.socket(zmq.DEALER)
        self._sock = sock
        sock.setsockopt(zmq.LINGER, 0)
        if self._curve:
            server, public, secret = self._curve
            sock.curve_serverkey = server.encode()
            sock.curve_publickey = (public or "").encode()
            sock.curve_secretkey = (secret or "").encode()
        sock.connect(self.endpoint)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- low level -------------------------------------------------------------------------

    def new_id(self) -> str:
        return self._prefix + str(next(self._ids))

    def _socket(self) -> "zmq.Socket[bytes]":
        if self._sock is None:
            raise CoalesceError(pb.UNAVAILABLE, "client is closed")
        return self._sock

    def send(self, request: Any) -> str:
        """Sends a Request (an id is assigned when empty); returns its id."""
        if not request.id:
            request.id = self.new_id()
        self._socket().send(request.SerializeToString())
        return request.id

    def send_raw(self, data: bytes) -> None:
        """Sends arbitrary bytes as one frame (for tests of malformed input)."""
        self._socket().send(data)

    def recv(self, timeout: Optional[float] = None) -> Any:
        """The next reply of any id, or None after `timeout` seconds."""
        t = self.timeout if timeout is None else timeout
        sock = self._socket()
        if not sock.poll(int(t * 1000)):
            return None
        reply = pb.Reply()
        reply.ParseFromString(sock.recv())
        return reply

    def call(self, request: Any, on_progress: Optional[ProgressFn] = None,
             timeout: Optional[float] = None) -> Any:
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
                 on_progress: Optional[ProgressFn] = None) -> GenerateResult:
        """Generates ``count`` images (image i uses seed + i); ``format`` "raw" or "png"."""
        req = generate_request(model, prompt, seed, steps, count, guidance, format, timeout_ms,
                               want_progress=on_progress is not None)
        seen: list[tuple[int, int]] = []

        def progress(step: int, total: int) -> None:
            seen.append((step, total))
            if on_progress:
                on_progress(step, total)

        return generate_result(self.call(req, progress), seen)

    def list_models(self) -> ModelList:
        return ModelList.from_pb(reply_field(self.call(simple_request("list_models")), "models"))

    def load_model(self, name: str) -> ModelInfo:
        """Loads (or hot-swaps) a model; an admin operation (admin endpoint or admin CURVE key)."""
        return ModelInfo.from_pb(reply_field(self.call(simple_request("load_model", name=name)), "model"))

    def unload_model(self, name: str) -> str:
        return str(reply_field(self.call(simple_request("unload_model", name=name)), "ack").message)

    def health(self) -> Health:
        return Health.from_pb(reply_field(self.call(simple_request("health")), "health"))

    def metrics(self) -> Metrics:
        return Metrics.from_pb(reply_field(self.call(simple_request("metrics")), "metrics"))

    def cancel(self, target_id: str) -> str:
        return str(reply_field(self.call(simple_request("cancel", target_id=target_id)), "ack").message)
