"""coalesce_client.aio: the daemon client for asyncio programs (pyzmq's asyncio sockets).

    import asyncio
    from coalesce_client.aio import Client

    async def main():
        async with Client("tcp://127.0.0.1:5555") as c:
            results = await asyncio.gather(*(c.generate("coalescer", prompt="a sandal", seed=s)
                                             for s in range(16)))
            results[0].to_pil(0).save("sandal.png")

    asyncio.run(main())

The same methods, arguments, results and errors as ``coalesce_client.Client``, as coroutines.
One Client serves any number of concurrent calls on its event loop: they share one DEALER socket,
and a reader task hands each reply to the call whose id it carries. On a timeout a call is resent
with the same id (up to ``retries`` times; generation is deterministic, so a resent request gives
the same images);
the socket is kept, since other calls are using it, and ZeroMQ reconnects it by itself.
"""
from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any, Dict, Optional

import zmq
import zmq.asyncio

from ._types import (pb, CoalesceError, GenerateResult, Health, Metrics, ModelInfo, ModelList, generate_request,
                     generate_result, reply_field, simple_request)
from . import ProgressFn

__all__ = ["Client"]


class Client:
    """An asyncio DEALER-socket client. Create and use it inside one running event loop."""

    _ids = itertools.count(1)

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", timeout: float = 30.0, retries: int = 0,
                 context: Optional[zmq.asyncio.Context] = None, server_key: Optional[str] = None,
                 public_key: Optional[str] = None, secret_key: Optional[str] = None):
        """server_key/public_key/secret_key (Z85 strings) enable CurveZMQ, as in the blocking Client."""
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self._ctx = context or zmq.asyncio.Context.instance()
        self._prefix = f"{os.getpid()}-aio-{id(self):x}-"
        self._pending: Dict[str, "asyncio.Queue[Any]"] = {}
        self._reader: Optional["asyncio.Task[None]"] = None
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if server_key:
            sock.curve_serverkey = server_key.encode()
            sock.curve_publickey = (public_key or "").encode()
            sock.curve_secretkey = (secret_key or "").encode()
        sock.connect(endpoint)
        self._sock: Optional[zmq.asyncio.Socket] = sock

    def close(self) -> None:
        """Stops the reader and closes the socket; calls still waiting raise UNAVAILABLE."""
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        for q in self._pending.values():
            q.put_nowait(None)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # ---- low level -------------------------------------------------------------------------

    def new_id(self) -> str:
        return self._prefix + str(next(self._ids))

    def _socket(self) -> zmq.asyncio.Socket:
        if self._sock is None:
            raise CoalesceError(pb.UNAVAILABLE, "client is closed")
        return self._sock

    async def _read(self) -> None:
        """Hands every reply to the queue of its id; replies to ids nobody waits for are dropped."""
        sock = self._socket()
        while True:
            data = await sock.recv()
            reply = pb.Reply()
            try:
                reply.ParseFromString(data)
            except Exception:
                continue
            q = self._pending.get(reply.id)
            if q is not None:
                q.put_nowait(reply)

    async def call(self, request: Any, on_progress: Optional[ProgressFn] = None,
                   timeout: Optional[float] = None) -> Any:
        """Sends ``request`` and returns its final reply (progress replies go to on_progress).
        Raises CoalesceError for an error reply, or after the timeout and ``retries`` resends
        (an UNAVAILABLE reply is resent at once while resends are left)."""
        t = self.timeout if timeout is None else timeout
        sock = self._socket()
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read())
        loop = asyncio.get_running_loop()
        if not request.id:
            request.id = self.new_id()
        rid = request.id
        for attempt in range(self.retries + 1):
            queue: "asyncio.Queue[Any]" = asyncio.Queue()
            self._pending[rid] = queue
            try:
                await sock.send(request.SerializeToString())
                deadline = loop.time() + t
                while True:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        reply = await asyncio.wait_for(queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                    if reply is None:
                        raise CoalesceError(pb.UNAVAILABLE, "client closed while waiting", rid)
                    kind = reply.WhichOneof("kind")
                    if kind == "progress":
                        if on_progress:
                            on_progress(reply.progress.step, reply.progress.total)
                        continue
                    if kind == "error":
                        if reply.error.code == pb.UNAVAILABLE and attempt < self.retries:
                            break
                        raise CoalesceError(reply.error.code, reply.error.message, rid)
                    return reply
            finally:
                self._pending.pop(rid, None)
        raise CoalesceError(pb.DEADLINE_EXCEEDED, f"no reply from {self.endpoint} within {t} s "
                                                   f"({self.retries + 1} attempt(s))", request.id)

    # ---- operations (as coalesce_client.Client) --------------------------------------------

    async def generate(self, model: str, prompt: str = "", seed: int = 0, steps: int = 0, count: int = 1,
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

        return generate_result(await self.call(req, progress), seen)

    async def list_models(self) -> ModelList:
        return ModelList.from_pb(reply_field(await self.call(simple_request("list_models")), "models"))

    async def load_model(self, name: str) -> ModelInfo:
        return ModelInfo.from_pb(reply_field(await self.call(simple_request("load_model", name=name)), "model"))

    async def unload_model(self, name: str) -> str:
        return str(reply_field(await self.call(simple_request("unload_model", name=name)), "ack").message)

    async def health(self) -> Health:
        return Health.from_pb(reply_field(await self.call(simple_request("health")), "health"))

    async def metrics(self) -> Metrics:
        return Metrics.from_pb(reply_field(await self.call(simple_request("metrics")), "metrics"))

    async def cancel(self, target_id: str) -> str:
        return str(reply_field(await self.call(simple_request("cancel", target_id=target_id)), "ack").message)
