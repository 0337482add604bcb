"""The Engine class: a libcoalesce engine handle with Pythonic methods."""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np

from . import _native
from .errors import CancelledError, CoalesceError, InvalidArgumentError, error_for
from .images import ImageBatch

#: progress(step, total) -> bool; return False to cancel the generation.
ProgressFn = Callable[[int, int], bool]


def _b(s: Optional[str | os.PathLike]) -> Optional[bytes]:
    if s is None:
        return None
    return os.fsencode(s)


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is (``cz_model_info``)."""
    height: int
    width: int
    channels: int
    default_steps: int
    max_steps: int
    max_batch: int
    supports_guidance: bool
    generation: int
    backend: str
    backend_version: str
    revision: str


def _engine_options(lib: Any) -> "_native.EngineOptions":
    opts = _native.EngineOptions()
    status = lib.cz_engine_options_init(ctypes.byref(opts), ctypes.sizeof(opts))
    if status != 0:
        raise error_for(status, lib.cz_engine_errmsg(None).decode(errors="replace"))
    return opts


def _generate_params(lib: Any) -> "_native.GenerateParams":
    p = _native.GenerateParams()
    status = lib.cz_generate_params_init(ctypes.byref(p), ctypes.sizeof(p))
    if status != 0:
        raise error_for(status, lib.cz_engine_errmsg(None).decode(errors="replace"))
    return p


def version() -> str:
    """libcoalesce's runtime version, "MAJOR.MINOR.PATCH"."""
    return _native.load_library().cz_version().decode()


def kernel_isa() -> str:
    """The instruction set Coalesce's kernels run on: "avx512", "avx2" or "scalar" ("avx512" and
    "avx2" give the same pixels; COALESCE_ISA=avx2 forces AVX2)."""
    return _native.load_library().cz_kernel_isa().decode()


def blas_core() -> str:
    """Deprecated: always "none" since libcoalesce 0.3 (generation does not use OpenBLAS)."""
    return _native.load_library().cz_blas_core().decode()


def status_string(status: int) -> str:
    return _native.load_library().cz_status_string(status).decode()


class Engine:
    """An in-process engine (``cz_engine``). Thread-safe: several threads may call
    :meth:`generate` at once (ctypes releases the GIL during the call).

    Use as a context manager or call :meth:`close`; the handle is also freed on garbage
    collection.
    """

    def __init__(self, plugin_dir: Optional[str] = None, models_dir: Optional[str] = None,
                 threads: int = 0, preload: bool = False, library: Optional[str] = None,
                 log: Optional[Callable[[int, str], None]] = None):
        """``threads``: compute threads per generate call (0 = the backend's default), a value of
        this engine (the process environment is not changed). ``log(level, line)`` receives the
        engine's log lines (level 1 error ... 4 debug), on the thread of the call that logs;
        exceptions it raises are swallowed."""
        self._lib = _native.load_library(library)
        opts = _engine_options(self._lib)
        self._log_cb = None
        if log is not None:
            def log_trampoline(level: int, line: bytes, _ud: Any) -> None:
                try:
                    log(level, line.decode(errors="replace"))
                except BaseException:  # never let an exception cross the C boundary
                    pass
            self._log_cb = _native.LOG_FN(log_trampoline)  # kept alive as long as the engine
            opts.log = self._log_cb
        if plugin_dir is not None:
            opts.plugin_dir = _b(plugin_dir)
        if models_dir is not None:
            opts.models_dir = _b(models_dir)
        opts.threads = int(threads)
        opts.preload = 1 if preload else 0
        handle = ctypes.c_void_p()
        status = self._lib.cz_engine_create(ctypes.byref(opts), ctypes.byref(handle))
        if status != 0:
            raise error_for(status, self._lib.cz_engine_errmsg(None).decode(errors="replace"))
        self._handle = handle
        # cz_engine_free must not overlap other calls on the engine (coalesce.h): calls count
        # themselves in and out, and close() waits for the last one.
        self._cv = threading.Condition()
        self._active = 0
        self._closed = False

    # ---- lifetime -----------------------------------------------------------------------
    def close(self) -> None:
        """Frees the engine (unloading every model) once calls running on other threads have
        returned. Idempotent."""
        cv = getattr(self, "_cv", None)
        if cv is None:  # __init__ failed before the handle existed
            return
        with cv:
            if self._closed:
                return
            self._closed = True
            cv.wait_for(lambda: self._active == 0)
            handle, self._handle = self._handle, ctypes.c_void_p()
        self._lib.cz_engine_free(handle)

    @contextlib.contextmanager
    def _call(self) -> Iterator[ctypes.c_void_p]:
        """Yields the live handle for one library call; raises if the engine is closed."""
        with self._cv:
            if self._closed:
                raise CoalesceError("engine is closed", 1)
            self._active += 1
        try:
            yield self._handle
        finally:
            with self._cv:
                self._active -= 1
                self._cv.notify_all()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _check(self, handle: ctypes.c_void_p, status: int) -> None:
        """Raises the error for a nonzero status, with this thread's message on `handle`."""
        if status != 0:
            msg = self._lib.cz_engine_errmsg(handle).decode(errors="replace")
            raise error_for(status, msg)

    # ---- models -------------------------------------------------------------------------
    def load_model(self, name: str, model_dir: Optional[str | os.PathLike] = None) -> None:
        """Loads (or hot-swaps) ``name`` from ``model_dir`` (default ``<models_dir>/<name>``)."""
        with self._call() as h:
            self._check(h, self._lib.cz_model_load(h, _b(name), _b(model_dir)))

    def unload_model(self, name: str) -> None:
        with self._call() as h:
            self._check(h, self._lib.cz_model_unload(h, _b(name)))

    def model_info(self, name: str) -> ModelInfo:
        """Typed facts about a loaded model (``cz_model_get_info``)."""
        info = _native.ModelInfo()
        info.struct_size = ctypes.sizeof(info)
        with self._call() as h:
            self._check(h, self._lib.cz_model_get_info(h, _b(name), ctypes.byref(info)))
        return ModelInfo(height=info.height, width=info.width, channels=info.channels,
                         default_steps=info.default_steps, max_steps=info.max_steps,
                         max_batch=info.max_batch, supports_guidance=bool(info.supports_guidance),
                         generation=info.generation,
                         backend=info.backend.decode(errors="replace"),
                         backend_version=info.backend_version.decode(errors="replace"),
                         revision=info.revision.decode(errors="replace"))

    def list_models(self) -> List[str]:
        """Names of the loaded models, sorted (``cz_engine_list_models``)."""
        names = ctypes.POINTER(ctypes.c_char_p)()
        count = ctypes.c_size_t()
        with self._call() as h:
            self._check(h, self._lib.cz_engine_list_models(h, ctypes.byref(names), ctypes.byref(count)))
        try:
            return [names[i].decode() for i in range(count.value)]
        finally:
            self._lib.cz_string_list_free(names)

    def describe(self, name: str) -> Dict[str, Any]:
        """The backend's description of a loaded model (height, width, channels, ...)."""
        out = ctypes.c_void_p()
        with self._call() as h:
            self._check(h, self._lib.cz_model_describe(h, _b(name), ctypes.byref(out)))
        try:
            if not out.value:
                raise CoalesceError("library returned no description", 6)
            described: Dict[str, Any] = json.loads(ctypes.string_at(out.value).decode())
            return described
        finally:
            self._lib.cz_string_free(out)

    # ---- generation ---------------------------------------------------------------------
    def generate(self, model: str, prompt: str = "", seed: int = 0, steps: int = 0,
                 count: int = 1, guidance: float = 0.0,
                 progress: Optional[ProgressFn] = None, timeout_ms: int = 0) -> ImageBatch:
        """Generates ``count`` images; returns uint8 pixels shaped (count, H, W) for
        grayscale or (count, H, W, C), as an :class:`ImageBatch` (a numpy array with
        ``to_pil()``). Image i uses seed + i.

        ``progress(step, total)`` is called on this thread at each network evaluation; return
        False to cancel (raises :class:`CancelledError`). Exceptions it raises cancel the call
        and are re-raised here.
        """
        for name, v in (("seed", seed), ("steps", steps), ("count", count),
                        ("timeout_ms", timeout_ms)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise InvalidArgumentError(f"{name} must be an int, got {type(v).__name__}")
        if not (0 <= seed < 2**64):
            raise InvalidArgumentError(f"seed must be in [0, 2**64), got {seed}")
        if not (-2**31 <= steps < 2**31) or not (-2**31 <= count < 2**31):
            raise InvalidArgumentError("steps and count must fit in 32 bits")
        if not (0 <= timeout_ms < 2**32):
            raise InvalidArgumentError(f"timeout_ms must be in [0, 2**32), got {timeout_ms}")

        p = _generate_params(self._lib)
        p.model = _b(model)
        p.prompt = prompt.encode("utf-8") if prompt is not None else None
        p.seed, p.steps, p.count = int(seed), int(steps), int(count)
        p.guidance = float(guidance)
        p.timeout_ms = int(timeout_ms)
        raised: list = []
        cb = None
        if progress is not None:
            def trampoline(step: int, total: int, _ud: Any) -> int:
                try:
                    return 1 if progress(step, total) is not False else 0
                except BaseException as e:  # never let an exception cross the C boundary
                    raised.append(e)
                    return 0
            cb = _native.PROGRESS_FN(trampoline)  # kept alive by `cb` for the whole call
            p.progress = cb

        batch = ctypes.c_void_p()
        with self._call() as h:
            status = self._lib.cz_generate(h, ctypes.byref(p), ctypes.byref(batch))
            if raised:
                self._lib.cz_image_batch_free(batch)
                raise raised[0]
            self._check(h, status)
        try:
            return _batch_to_array(self._lib, batch)
        finally:
            self._lib.cz_image_batch_free(batch)


def _batch_to_array(lib: Any, batch: ctypes.c_void_p) -> ImageBatch:
    n = lib.cz_image_batch_count(batch)
    h, w, c = (lib.cz_image_batch_height(batch), lib.cz_image_batch_width(batch),
               lib.cz_image_batch_channels(batch))
    total = n * h * w * c
    ptr = lib.cz_image_batch_pixels(batch, 0)
    if total <= 0 or not ptr:
        raise CoalesceError(f"library returned an empty batch ({n}x{h}x{w}x{c})", 6)
    arr = np.ctypeslib.as_array(ptr, shape=(total,)).copy()  # copy: the batch is freed next
    return ImageBatch(arr.reshape((n, h, w)) if c == 1 else arr.reshape((n, h, w, c)))


def write_png_native(engine: Engine, path: str | os.PathLike, model: str, index: int = 0,
                     **kwargs: Any) -> None:
    """Generates and writes image ``index`` through the library's cz_image_write_png (libpng),
    so tests can compare the C encoder with :func:`coalesce.save_png`."""
    lib = engine._lib
    p = _generate_params(lib)
    p.model = _b(model)
    p.prompt = kwargs.get("prompt", "").encode("utf-8")
    p.seed = int(kwargs.get("seed", 0))
    p.steps = int(kwargs.get("steps", 0))
    p.count = int(kwargs.get("count", 1))
    p.guidance = float(kwargs.get("guidance", 0.0))
    batch = ctypes.c_void_p()
    with engine._call() as h:
        engine._check(h, lib.cz_generate(h, ctypes.byref(p), ctypes.byref(batch)))
    try:
        status = lib.cz_image_write_png(batch, int(index), os.fsencode(path))
        if status != 0:
            raise error_for(status, lib.cz_engine_errmsg(None).decode(errors="replace"))
    finally:
        lib.cz_image_batch_free(batch)
