"""Plain Python results of the daemon's replies (dataclasses), shared by the blocking and the
asyncio client, and the request builders both send."""
from __future__ import annotations

import enum
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union, overload

from . import coalesce_pb2 as _pb2

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

#: The generated protobuf module (coalesce.v1); typed Any, as protoc wrote no stubs for it.
pb: Any = _pb2

__all__ = ["pb", "ErrorCode", "CoalesceError", "GenerateResult", "ModelInfo", "ModelList", "Health",
           "OutcomeCount", "HistogramBucket", "ModelCounts", "Metrics"]


class ErrorCode(enum.IntEnum):
    """The wire's status codes (coalesce.v1.ErrorCode); equal to the pb constants."""
    OK = 0
    INVALID_ARGUMENT = 1
    NOT_FOUND = 2
    RESOURCE_EXHAUSTED = 3
    CANCELLED = 4
    DEADLINE_EXCEEDED = 5
    INTERNAL = 6
    UNAVAILABLE = 7


def _code(value: int) -> Union[ErrorCode, int]:
    try:
        return ErrorCode(value)
    except ValueError:
        return value


ERROR_NAMES: Dict[int, str] = {c.value: c.name for c in ErrorCode}


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
    """The images of one generate request and where they came from."""
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
    progress: List[Tuple[int, int]] = field(default_factory=list)

    def array(self) -> "np.ndarray":
        """The images as a numpy uint8 array (count, height, width) or (count, height, width, channels).
        PNG replies are decoded (Pillow)."""
        import numpy as np
        if self.format == pb.PNG:
            return np.stack([np.asarray(im) for im in self.to_pil()])
        a = np.frombuffer(b"".join(self.images), dtype=np.uint8)
        shape = (len(self.images), self.height, self.width) + ((self.channels,) if self.channels > 1 else ())
        return a.reshape(shape)

    @overload
    def to_pil(self) -> "List[PILImage.Image]": ...
    @overload
    def to_pil(self, index: int) -> "PILImage.Image": ...

    def to_pil(self, index: Optional[int] = None) -> "Union[PILImage.Image, List[PILImage.Image]]":
        """Image ``index`` as a PIL image (mode L, LA, RGB or RGBA), or all of them as a list."""
        from PIL import Image
        if index is None:
            return [self.to_pil(i) for i in range(len(self.images))]
        if self.format == pb.PNG:
            im = Image.open(io.BytesIO(self.images[index]))
            im.load()
            return im
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[self.channels]
        return Image.frombytes(mode, (self.width, self.height), self.images[index])

    def png(self, index: int) -> bytes:
        """Image ``index`` as PNG bytes: the daemon's own (libpng) when the reply carried PNGs,
        else encoded here by Pillow."""
        if self.format == pb.PNG:
            return self.images[index]
        buf = io.BytesIO()
        self.to_pil(index).save(buf, format="PNG")
        return buf.getvalue()

    def save_png(self, index: int, path: str) -> None:
        with open(path, "wb") as f:
            f.write(self.png(index))


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model (coalesce.v1.ModelInfo)."""
    name: str
    backend: str
    backend_version: str
    revision: str
    generation: int
    width: int
    height: int
    channels: int
    default_steps: int
    max_steps: int
    max_batch: int
    supports_guidance: bool
    in_flight: int
    state: str = ""            # "serving", "restarting" or "failed"
    failure: str = ""          # why it failed (state "failed")
    worker_pid: int = 0        # its worker process (0: in process, or none right now)
    worker_rss_bytes: int = 0  # that worker's resident memory
    worker_restarts: int = 0   # workers started after the first

    @classmethod
    def from_pb(cls, m: Any) -> "ModelInfo":
        return cls(name=m.name, backend=m.backend, backend_version=m.backend_version, revision=m.revision,
                   generation=m.generation, width=m.width, height=m.height, channels=m.channels,
                   default_steps=m.default_steps, max_steps=m.max_steps, max_batch=m.max_batch,
                   supports_guidance=m.supports_guidance, in_flight=m.in_flight, state=m.state,
                   failure=m.failure, worker_pid=m.worker_pid, worker_rss_bytes=m.worker_rss_bytes,
                   worker_restarts=m.worker_restarts)


@dataclass(frozen=True)
class ModelList:
    """The loaded models and the model directories of the daemon's repository."""
    loaded: List[ModelInfo]
    available: List[str]

    @classmethod
    def from_pb(cls, m: Any) -> "ModelList":
        return cls(loaded=[ModelInfo.from_pb(x) for x in m.loaded], available=list(m.available))


@dataclass(frozen=True)
class ModelFailure:
    """A loaded model that cannot serve (its workers keep dying at load)."""
    name: str
    reason: str


@dataclass(frozen=True)
class Health:
    """Liveness and readiness (ready: a model loaded and serving, and not draining)."""
    live: bool
    ready: bool
    draining: bool
    queue_depth: int
    models_loaded: int
    version: str
    failed: List[ModelFailure] = field(default_factory=list)

    @classmethod
    def from_pb(cls, h: Any) -> "Health":
        return cls(live=h.live, ready=h.ready, draining=h.draining, queue_depth=h.queue_depth,
                   models_loaded=h.models_loaded, version=h.version,
                   failed=[ModelFailure(f.name, f.reason) for f in h.failed])


@dataclass(frozen=True)
class OutcomeCount:
    outcome: Union[ErrorCode, int]
    count: int


@dataclass(frozen=True)
class HistogramBucket:
    le_ms: float  # upper bound in milliseconds (inf for the last bucket)
    count: int    # cumulative: requests with latency <= le_ms


@dataclass(frozen=True)
class ModelCounts:
    model: str
    requests: int
    images: int
    errors: int


@dataclass(frozen=True)
class WorkerProcess:
    """A backend worker process of the daemon (--isolation process)."""
    model: str
    pid: int
    rss_bytes: int
    state: str


@dataclass(frozen=True)
class Metrics:
    """The daemon's counters (coalesce.v1.Metrics; the same numbers as /metrics over HTTP)."""
    queue_depth: int
    queue_capacity: int
    in_flight: int
    requests_by_outcome: List[OutcomeCount]
    latency: List[HistogramBucket]
    latency_count: int
    latency_sum_ms: float
    per_model: List[ModelCounts]
    batches: int
    batched_requests: int
    malformed: int
    workers: List[WorkerProcess] = field(default_factory=list)
    daemon_rss_bytes: int = 0

    @property
    def outcomes(self) -> Dict[str, int]:
        """Final replies by outcome name, e.g. {"OK": 12, "INVALID_ARGUMENT": 1}."""
        return {ERROR_NAMES.get(int(o.outcome), str(int(o.outcome))): o.count for o in self.requests_by_outcome}

    @classmethod
    def from_pb(cls, m: Any) -> "Metrics":
        return cls(queue_depth=m.queue_depth, queue_capacity=m.queue_capacity, in_flight=m.in_flight,
                   requests_by_outcome=[OutcomeCount(_code(o.outcome), o.count) for o in m.requests_by_outcome],
                   latency=[HistogramBucket(b.le_ms, b.count) for b in m.latency],
                   latency_count=m.latency_count, latency_sum_ms=m.latency_sum_ms,
                   per_model=[ModelCounts(p.model, p.requests, p.images, p.errors) for p in m.per_model],
                   batches=m.batches, batched_requests=m.batched_requests, malformed=m.malformed,
                   workers=[WorkerProcess(w.model, w.pid, w.rss_bytes, w.state) for w in m.workers],
                   daemon_rss_bytes=m.daemon_rss_bytes)


# ---- requests and replies (shared by both clients) ---------------------------------------------

def generate_request(model: str, prompt: str, seed: int, steps: int, count: int, guidance: float,
                     format: str, timeout_ms: int, want_progress: bool) -> Any:
    if format not in ("raw", "png"):
        raise ValueError(f"format must be 'raw' or 'png', got {format!r}")
    req = pb.Request()
    g = req.generate
    g.model, g.prompt, g.seed, g.steps, g.count, g.guidance = model, prompt, seed, steps, count, guidance
    g.format = pb.PNG if format == "png" else pb.RAW
    g.timeout_ms = timeout_ms
    g.want_progress = want_progress
    return req


def simple_request(kind: str, **fields: str) -> Any:
    """A Request whose oneof is ``kind`` (list_models, health, metrics, load_model, ...)."""
    req = pb.Request()
    sub = getattr(req, kind)
    sub.SetInParent()
    for k, v in fields.items():
        setattr(sub, k, v)
    return req


def generate_result(reply: Any, progress: List[Tuple[int, int]]) -> GenerateResult:
    if reply.WhichOneof("kind") != "images":
        raise CoalesceError(pb.INTERNAL, f"unexpected reply kind {reply.WhichOneof('kind')}")
    im = reply.images
    return GenerateResult(images=list(im.images), width=im.width, height=im.height, channels=im.channels,
                          format=im.format, model=im.model, backend=im.backend, revision=im.revision,
                          generation=im.generation, queue_ms=im.queue_ms, run_ms=im.run_ms,
                          batch_requests=im.batch_requests, progress=progress)


def reply_field(reply: Any, kind: str) -> Any:
    """The ``kind`` part of a final reply, or CoalesceError(INTERNAL) for another kind."""
    got = reply.WhichOneof("kind")
    if got != kind:
        raise CoalesceError(pb.INTERNAL, f"expected a {kind} reply, got {got}", reply.id)
    return getattr(reply, kind)
