"""Tests of the `coalesce` binding against the REAL libcoalesce.so and test-pattern backend.

Where the library is: $COALESCE_LIB (path to libcoalesce.so) or $COALESCE_PREFIX (an install
prefix, as `make test-python` sets up). The test-pattern model is taken from
$COALESCE_PREFIX/share/coalesce/models/test-pattern, else from the repository's models/.
The C-vs-Python identity test builds Bindings/c/example.c with gcc against $COALESCE_PREFIX.
"""
from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import coalesce

REPO = Path(__file__).resolve().parents[3]
PREFIX = os.environ.get("COALESCE_PREFIX")
MASK = (1 << 64) - 1


def _model_dir() -> Path:
    if PREFIX:
        p = Path(PREFIX) / "share/coalesce/models/test-pattern"
        if p.is_dir():
            return p
    return REPO / "models/test-pattern"


MODEL_DIR = _model_dir()


@pytest.fixture
def engine():
    with coalesce.Engine() as eng:
        eng.load_model("tp", MODEL_DIR)
        yield eng


def _model(tmp_path: Path, name: str, **config) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"backend": "test-pattern", **config}))
    return d


# ---- An independent reference: the test-pattern drawing rule, re-derived in Python -----------

def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _fnv1a(s: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in s:
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def reference_pattern(seed: int, prompt: str) -> np.ndarray:
    h = _splitmix64((seed ^ _splitmix64(_fnv1a(prompt.encode()))) & MASK)
    kind, period = h % 3, 2 + (h >> 8) % 6
    phase = (h >> 16) % period
    hi, lo = 128 + (h >> 24) % 128, (h >> 32) % 64
    y, x = np.mgrid[0:28, 0:28]
    by, bx = (y + phase) // period, (x + phase) // period
    on = [by & 1, bx & 1, (bx + by) & 1][kind]
    return np.where(on == 1, hi, lo).astype(np.uint8)


# ---- Basics ------------------------------------------------------------------------------------

def test_version_and_struct_layout_match_the_library():
    assert coalesce.version() == "0.3.0"
    from coalesce import _native, engine as engine_mod
    lib = _native.load_library()
    assert engine_mod._generate_params(lib).struct_size == ctypes_sizeof(_native.GenerateParams)
    assert engine_mod._engine_options(lib).struct_size == ctypes_sizeof(_native.EngineOptions)
    assert coalesce.status_string(2) == "CZ_NOT_FOUND"
    assert coalesce.status_string(99) == "CZ_UNKNOWN_STATUS"


def test_initialisers_write_only_the_callers_struct():
    """cz_*_init writes exactly `size` bytes: a smaller size than any version is refused."""
    import ctypes
    from coalesce import _native
    lib = _native.load_library()
    buf = (ctypes.c_ubyte * 256)(*([0xAB] * 256))
    opts = ctypes.cast(buf, ctypes.POINTER(_native.EngineOptions))
    size = ctypes.sizeof(_native.EngineOptions)
    assert lib.cz_engine_options_init(opts, size) == 0
    assert opts.contents.struct_size == size and opts.contents.threads == 0
    assert list(buf[size:]) == [0xAB] * (256 - size)
    assert lib.cz_engine_options_init(opts, 8) == 1
    assert "struct_size" in lib.cz_engine_errmsg(None).decode()


def ctypes_sizeof(t) -> int:
    import ctypes
    return ctypes.sizeof(t)


def _cpu_flags() -> set:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def test_kernel_isa_is_the_widest_this_cpu_has():
    """The kernels run with AVX-512 where the CPU has it, else AVX2 (COALESCE_ISA can ask for less)."""
    flags = _cpu_flags()
    isa = coalesce.kernel_isa()
    if os.environ.get("COALESCE_ISA"):
        pytest.skip(f"COALESCE_ISA set by the user ({os.environ['COALESCE_ISA']}); isa {isa}")
    if "avx512f" in flags:
        assert isa == "avx512"
    elif {"avx2", "fma"} <= flags:
        assert isa == "avx2"
    else:
        assert isa == "scalar"


def test_generation_never_loads_openblas(engine):
    """Generation runs on Coalesce's own kernels: OpenBLAS (whose bits differ between its cores)
    is not loaded into the host by loading or running a model, and cz_blas_core says "none"."""
    engine.generate("tp", prompt="a bag", seed=1, count=1)
    assert coalesce.blas_core() == "none"
    with open("/proc/self/maps") as f:
        maps = f.read()
    assert "libopenblas" not in maps


def test_generate_matches_the_reference_pattern(engine):
    images = engine.generate("tp", prompt="a sneaker", seed=42, count=4)
    assert images.shape == (4, 28, 28) and images.dtype == np.uint8
    for i in range(4):
        np.testing.assert_array_equal(images[i], reference_pattern(42 + i, "a sneaker"))


def test_same_inputs_same_pixels_and_batch_independence(engine):
    a = engine.generate("tp", prompt="a bag", seed=7, count=3)
    b = engine.generate("tp", prompt="a bag", seed=7, count=3)
    np.testing.assert_array_equal(a, b)
    # Image i of a batch is the image of seed + i alone.
    single = engine.generate("tp", prompt="a bag", seed=9, count=1)
    np.testing.assert_array_equal(a[2], single[0])
    # Prompt and seed both matter.
    assert not np.array_equal(a[0], engine.generate("tp", prompt="a coat", seed=7)[0])
    assert not np.array_equal(a[0], engine.generate("tp", prompt="a bag", seed=8)[0])


def test_describe(engine):
    d = engine.describe("tp")
    assert (d["height"], d["width"], d["channels"]) == (28, 28, 1)
    assert d["backend"] == "test-pattern"
    assert d["name"] == "tp"
    assert Path(d["directory"]) == MODEL_DIR.resolve()


def test_model_info_and_list(engine, tmp_path):
    info = engine.model_info("tp")
    assert (info.height, info.width, info.channels) == (28, 28, 1)
    assert (info.default_steps, info.max_steps, info.max_batch) == (4, 64, 256)
    assert info.supports_guidance is False and info.generation >= 1
    assert (info.backend, info.backend_version, info.revision) == ("test-pattern", "1.0.0", "1")
    assert engine.list_models() == ["tp"]
    engine.load_model("a-first", MODEL_DIR)
    assert engine.list_models() == ["a-first", "tp"]
    engine.load_model("tp", MODEL_DIR)  # hot swap: a new generation
    assert engine.model_info("tp").generation != info.generation
    engine.unload_model("a-first")
    assert engine.list_models() == ["tp"]
    with pytest.raises(coalesce.NotFoundError):
        engine.model_info("a-first")


def test_log_callback_gets_the_engines_lines():
    lines = []
    with coalesce.Engine(log=lambda level, line: lines.append((level, line))) as eng:
        eng.load_model("tp", MODEL_DIR)
    assert any(level == 3 and "model loaded" in line for level, line in lines), lines


def test_threads_is_a_value_not_an_environment_edit(tmp_path):
    """threads > 0 reaches the backend with each request; the process environment is unchanged."""
    import ctypes
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    before = libc.getenv(b"COALESCE_THREADS")
    needs3 = _model(tmp_path, "needs3", require_threads=3)
    with coalesce.Engine(threads=3) as eng:
        assert libc.getenv(b"COALESCE_THREADS") == before
        eng.load_model("m", needs3)
        assert eng.generate("m").shape == (1, 28, 28)
    with coalesce.Engine() as eng:
        eng.load_model("m", needs3)
        with pytest.raises(coalesce.InvalidArgumentError, match="threads"):
            eng.generate("m")


@pytest.mark.parametrize("config, error, pattern", [
    ("", coalesce.InvalidArgumentError, "empty"),
    ('{"backend": "test-pattern", "default_steps": -5}', coalesce.InvalidArgumentError, "default_steps"),
    ('{"backend": "test-pattern", "default_steps": "two"}', coalesce.InvalidArgumentError, "default_steps"),
    ('{"backend": "test-pattern", "default_steps": 2e9}', coalesce.InvalidArgumentError, "default_steps"),
    ('{"backend": "test-pattern", "revision": 1}', coalesce.InvalidArgumentError, "revision"),
])
def test_bad_configs_are_refused_naming_the_field(engine, tmp_path, config, error, pattern):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "config.json").write_text(config)
    with pytest.raises(error, match=pattern):
        engine.load_model("bad", d)


def test_non_finite_weights_are_refused(engine, tmp_path):
    import struct
    d = _model(tmp_path, "weights")
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    for values, ok in (((1.0, 2.0), True), ((1.0, float("nan")), False), ((float("-inf"), 0.0), False)):
        (d / "w.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<2f", *values))
        if ok:
            engine.load_model("weights", d)
        else:
            with pytest.raises(coalesce.InvalidArgumentError, match="non-finite"):
                engine.load_model("weights", d)


# ---- Errors: status codes with messages, never a crash ------------------------------------------

def test_unknown_model_and_bad_paths(engine, tmp_path):
    with pytest.raises(coalesce.NotFoundError, match="nope"):
        engine.generate("nope")
    with pytest.raises(coalesce.NotFoundError, match="does not exist"):
        engine.load_model("x", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(coalesce.NotFoundError, match="config.json"):
        engine.load_model("x", tmp_path / "empty")
    with pytest.raises(coalesce.NotFoundError, match="no plugin"):
        engine.load_model("x", _model(tmp_path, "other", backend="no-such-backend"))
    with pytest.raises(coalesce.InvalidArgumentError):
        engine.load_model("x", _model(tmp_path, "evil", backend="../../etc/passwd"))
    with pytest.raises(coalesce.InternalError, match="fail"):
        engine.load_model("x", _model(tmp_path, "failing", fail=True))
    with pytest.raises(coalesce.InvalidArgumentError, match="name"):
        engine.load_model("../etc", MODEL_DIR)
    with pytest.raises(coalesce.InvalidArgumentError):
        engine.load_model("", MODEL_DIR)
    with pytest.raises(coalesce.NotFoundError):
        engine.unload_model("never-loaded")
    with pytest.raises(coalesce.NotFoundError):
        coalesce.Engine(plugin_dir=str(tmp_path / "no-plugins"))
    with pytest.raises(coalesce.InvalidArgumentError, match="threads"):
        coalesce.Engine(threads=-1)
    # The engine still works after all of that.
    assert engine.generate("tp").shape == (1, 28, 28)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(count=-3), "count"),
    (dict(count=10**6), "count"),
    (dict(count=2**31 - 1), "count"),
    (dict(count=4097), "count"),         # above CZ_MAX_COUNT (more than max_batch runs in parts)
    (dict(steps=-2), "steps"),
    (dict(steps=10**6), "steps"),
    (dict(steps=65), "steps"),           # above the model's max_steps (64)
    (dict(guidance=float("nan")), "guidance"),
    (dict(guidance=float("inf")), "guidance"),
    (dict(prompt="x" * 5000), "prompt"),
])
def test_bad_generate_arguments(engine, kwargs, pattern):
    with pytest.raises(coalesce.InvalidArgumentError, match=pattern) as e:
        engine.generate("tp", **kwargs)
    assert e.value.status == 1 and e.value.message


def test_binding_side_checks(engine):
    with pytest.raises(coalesce.InvalidArgumentError):
        engine.generate("tp", seed=-1)
    with pytest.raises(coalesce.InvalidArgumentError):
        engine.generate("tp", count=2**40)
    with pytest.raises(coalesce.InvalidArgumentError):
        engine.generate("tp", count=1.5)
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(coalesce.CoalesceError, match="closed"):
        engine.generate("tp")


def test_unicode_prompt(engine):
    prompt = "une chaussure à talon — 靴"
    np.testing.assert_array_equal(engine.generate("tp", prompt=prompt, seed=3)[0],
                                  reference_pattern(3, prompt))


# ---- Cancel, deadline, progress ------------------------------------------------------------

def test_progress_reports_every_step(engine):
    seen = []
    engine.generate("tp", steps=5, progress=lambda s, t: seen.append((s, t)) or True)
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_cancel_via_callback(engine):
    seen = []

    def cb(step, total):
        seen.append(step)
        return step < 2

    with pytest.raises(coalesce.CancelledError, match="step 2"):
        engine.generate("tp", steps=6, progress=cb)
    assert seen == [1, 2]
    # A cancelled call leaves the engine usable.
    assert engine.generate("tp").shape == (1, 28, 28)


def test_exception_in_callback_cancels_and_propagates(engine):
    def cb(step, total):
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        engine.generate("tp", steps=3, progress=cb)


def test_deadline(tmp_path):
    with coalesce.Engine() as eng:
        eng.load_model("slow", _model(tmp_path, "slow", step_delay_ms=40))
        with pytest.raises(coalesce.DeadlineExceededError):
            eng.generate("slow", steps=20, timeout_ms=100)
        assert eng.generate("slow", steps=2, timeout_ms=60_000).shape == (1, 28, 28)


# ---- Models: hot swap, unload --------------------------------------------------------------------

def test_hot_swap_and_unload(tmp_path):
    with coalesce.Engine() as eng:
        eng.load_model("m", _model(tmp_path, "rev1", revision="one"))
        assert eng.describe("m")["revision"] == "one"
        eng.load_model("m", _model(tmp_path, "rev2", revision="two"))
        assert eng.describe("m")["revision"] == "two"
        # A failed load keeps the old one serving.
        with pytest.raises(coalesce.InternalError):
            eng.load_model("m", _model(tmp_path, "bad", fail=True))
        assert eng.describe("m")["revision"] == "two"
        eng.unload_model("m")
        with pytest.raises(coalesce.NotFoundError):
            eng.generate("m")


def test_hot_swap_under_load_drops_nothing(tmp_path):
    """Generate from 4 threads while another thread swaps the model between two directories
    (and reloads it in place) every few milliseconds: every request succeeds, and each result is
    the pattern both revisions draw (same backend, so the same pixels)."""
    dirs = [_model(tmp_path, "rev1", revision="1", step_delay_ms=1),
            _model(tmp_path, "rev2", revision="2", step_delay_ms=1)]
    expected = np.stack([reference_pattern(77 + i, "a shirt") for i in range(2)])
    with coalesce.Engine() as eng:
        eng.load_model("m", dirs[0])
        stop, errors, done, swaps = threading.Event(), [], [0], [0]

        def client():
            try:
                while not stop.is_set():
                    np.testing.assert_array_equal(eng.generate("m", prompt="a shirt", seed=77, count=2, steps=3),
                                                  expected)
                    done[0] += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        def swapper():
            k = 0
            while not stop.is_set():
                k += 1
                eng.load_model("m", dirs[k % 2] if k % 3 else dirs[(k - 1) % 2])
                swaps[0] += 1
                stop.wait(0.005)

        threads = [threading.Thread(target=client) for _ in range(4)] + [threading.Thread(target=swapper)]
        for t in threads:
            t.start()
        stop.wait(1.5)
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert done[0] > 20 and swaps[0] > 20, (done[0], swaps[0])


def test_models_dir_and_preload(tmp_path):
    _model(tmp_path, "alpha")
    _model(tmp_path, "beta", revision="b")
    (tmp_path / "not-a-model").mkdir()
    with coalesce.Engine(models_dir=str(tmp_path), preload=True) as eng:
        assert eng.describe("beta")["revision"] == "b"
        assert eng.generate("alpha").shape == (1, 28, 28)
    with coalesce.Engine(models_dir=str(tmp_path)) as eng:
        with pytest.raises(coalesce.NotFoundError):
            eng.generate("alpha")
        eng.load_model("alpha")  # from <models_dir>/alpha
        assert eng.generate("alpha").shape == (1, 28, 28)


# ---- Threads, cycles --------------------------------------------------------------------------

def test_count_zero_is_one_image_as_on_the_wire(engine):
    assert engine.generate("tp", seed=3, count=0).shape == (1, 28, 28)
    assert (engine.generate("tp", seed=3, count=0) == engine.generate("tp", seed=3, count=1)).all()


def test_concurrent_generate_on_one_engine(engine):
    expected = engine.generate("tp", prompt="a dress", seed=100, count=8)
    errors, results = [], []

    def worker(k):
        try:
            for _ in range(25):
                results.append(engine.generate("tp", prompt="a dress", seed=100, count=8))
                with pytest.raises(coalesce.InvalidArgumentError, match="count"):
                    engine.generate("tp", count=-1)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 100
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_close_waits_for_running_calls(tmp_path):
    eng = coalesce.Engine()
    eng.load_model("slow", _model(tmp_path, "slow", step_delay_ms=30))
    started, out = threading.Event(), []

    def worker():
        out.append(eng.generate("slow", steps=10, seed=1, progress=lambda s, t: started.set() or True))

    t = threading.Thread(target=worker)
    t.start()
    assert started.wait(10)
    eng.close()  # must not free the engine under the running call
    t.join()
    np.testing.assert_array_equal(out[0][0], reference_pattern(1, ""))
    with pytest.raises(coalesce.CoalesceError, match="closed"):
        eng.generate("slow")


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_many_create_generate_free_cycles():
    first = None

    def cycle():
        nonlocal first
        eng = coalesce.Engine()
        eng.load_model("tp", MODEL_DIR)
        img = eng.generate("tp", prompt="a shirt", seed=5, count=2)
        eng.close()
        if first is None:
            first = img
        np.testing.assert_array_equal(img, first)

    for _ in range(30):  # warm up caches
        cycle()
    gc.collect()
    before = _rss_kb()
    for _ in range(300):
        cycle()
    gc.collect()
    grown = _rss_kb() - before
    # A leak of one image batch per cycle alone would be 300 * 1.5 KB; allow allocator noise.
    assert grown < 4096, f"RSS grew by {grown} KB over 300 cycles"


# ---- PNG ----------------------------------------------------------------------------------

def test_png_python_and_library_encoders_agree(engine, tmp_path):
    images = engine.generate("tp", prompt="a boot", seed=11, count=2)
    coalesce.save_png(images[1], tmp_path / "py.png")
    coalesce.write_png_native(engine, tmp_path / "c.png", "tp", index=1, prompt="a boot", seed=11, count=2)
    np.testing.assert_array_equal(coalesce.read_png(tmp_path / "py.png"), images[1])
    np.testing.assert_array_equal(coalesce.read_png(tmp_path / "c.png"), images[1])
    with pytest.raises(coalesce.NotFoundError):
        coalesce.write_png_native(engine, tmp_path / "missing-dir" / "x.png", "tp")
    with pytest.raises(coalesce.InvalidArgumentError):
        coalesce.write_png_native(engine, tmp_path / "x.png", "tp", index=5)
    with pytest.raises(ValueError):
        coalesce.save_png(np.zeros((4, 4), dtype=np.float32), tmp_path / "f.png")


def test_pil_round_trip_equals_the_numpy_pixels(engine, tmp_path):
    from PIL import Image
    images = engine.generate("tp", prompt="a sandal", seed=3, count=4)
    assert isinstance(images, coalesce.ImageBatch) and isinstance(images, np.ndarray)
    pils = images.to_pil()
    assert len(pils) == 4 and all(p.mode == "L" and p.size == (28, 28) for p in pils)
    for i, p in enumerate(pils):
        np.testing.assert_array_equal(np.asarray(p), images[i])
        p.save(tmp_path / f"{i}.png")  # through Pillow's PNG writer and back
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"{i}.png")), images[i])
    np.testing.assert_array_equal(np.asarray(coalesce.to_pil(images[2])), images[2])
    assert type(images[0]) is np.ndarray and isinstance(images[1:3], coalesce.ImageBatch)
    # colour and alpha: the same rule for (count, H, W, C)
    rng = np.random.default_rng(0)
    for c, mode in ((3, "RGB"), (4, "RGBA")):
        rgb = coalesce.ImageBatch(rng.integers(0, 256, size=(2, 5, 7, c), dtype=np.uint8))
        p = rgb.to_pil(1)
        assert p.mode == mode and p.size == (7, 5)
        np.testing.assert_array_equal(np.asarray(p), rgb[1])
        coalesce.save_png(rgb[1], tmp_path / f"c{c}.png")
        np.testing.assert_array_equal(coalesce.read_png(tmp_path / f"c{c}.png"), rgb[1])


# ---- Identity across faces ---------------------------------------------------------------------

@pytest.mark.skipif(not PREFIX, reason="needs COALESCE_PREFIX (an installed Coalesce) to build the C example")
def test_c_and_python_give_identical_pixels(tmp_path):
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    assert cc, "no C compiler"
    env = dict(os.environ, PKG_CONFIG_PATH=str(Path(PREFIX) / "lib/pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "coalesce"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    exe = tmp_path / "example"
    subprocess.run([cc, "-std=c99", "-o", str(exe), str(REPO / "Bindings/c/example.c"), *flags], check=True)
    for prompt, seed, steps, count in [("a sneaker", 42, 0, 4), ("", 2**63 + 5, 3, 2), ("a bag", 0, 7, 16)]:
        raw = tmp_path / f"c-{seed}.raw"
        subprocess.run([str(exe), "-m", "test-pattern", "-p", prompt, "-s", str(seed), "-n", str(steps),
                        "-c", str(count), "-o", str(tmp_path / "c.png"), "-r", str(raw)],
                       check=True, capture_output=True, env={"PATH": "/usr/bin:/bin"})
        c_pixels = np.fromfile(raw, dtype=np.uint8).reshape(count, 28, 28)
        with coalesce.Engine() as eng:
            eng.load_model("test-pattern")  # the installed model repository, as the C example does
            py_pixels = eng.generate("test-pattern", prompt=prompt, seed=seed, steps=steps, count=count)
        np.testing.assert_array_equal(c_pixels, py_pixels)
        np.testing.assert_array_equal(py_pixels[0], reference_pattern(seed, prompt))


COALESCED = os.environ.get("COALESCED")


@pytest.mark.skipif(not COALESCED or not Path(COALESCED).exists(),
                    reason="needs COALESCED (a coalesced binary; `make test-python` sets it)")
def test_daemon_and_library_give_identical_pixels(tmp_path):
    """The same request through coalesced (ZeroMQ + protobuf) and through libcoalesce in-process."""
    import signal
    import socket
    import time

    client_mod = pytest.importorskip("coalesce_client")  # installed by the same pyproject
    from coalesce import _native
    plugin_dir = coalesce.engine._engine_options(_native.load_library()).plugin_dir.decode()
    repo = tmp_path / "models"
    repo.mkdir()
    shutil.copytree(MODEL_DIR, repo / "test-pattern")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    endpoint = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "coalesced.log", "w+")
    proc = subprocess.Popen([COALESCED, "--models", str(repo), "--plugins", plugin_dir, "--endpoint", endpoint,
                             "--admin-endpoint", f"ipc://{tmp_path}/admin.ipc"], stdout=log, stderr=subprocess.STDOUT)
    try:
        with client_mod.Client(endpoint, timeout=10) as c:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if c.health().live:
                        break
                except client_mod.CoalesceError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, "coalesced did not start"
                time.sleep(0.1)
            with coalesce.Engine() as eng:
                eng.load_model("test-pattern", repo / "test-pattern")
                for prompt, seed, steps, count in [("a sneaker", 42, 0, 4), ("", 2**63 + 5, 3, 2),
                                                   ("a bag", 0, 7, 16)]:
                    remote = c.generate("test-pattern", prompt=prompt, seed=seed, steps=steps, count=count,
                                        format="raw").array()
                    local = eng.generate("test-pattern", prompt=prompt, seed=seed, steps=steps, count=count)
                    np.testing.assert_array_equal(remote, local)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.seek(0)
        print(log.read())


COALESCE_CLI = os.environ.get("COALESCE_CLI")


@pytest.fixture(scope="module")
def coalescer_model(tmp_path_factory) -> Path:
    """A coalescer model: $COALESCE_COALESCER_MODEL, else a tiny one trained here by the CLI
    (seconds; the pixels only have to agree between faces, not look good)."""
    given = os.environ.get("COALESCE_COALESCER_MODEL")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("models") / "coalescer"
    proc = subprocess.run([COALESCE_CLI, "train", "coalescer", "--out", str(out), "--train-limit", "600",
                           "--ae-epochs", "0.2", "--text-steps", "10", "--steps", "10", "--batch-size", "32",
                           "--hidden", "32", "--depth", "1", "--ae-channels", "4,4,4", "--probe-per-class", "0"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"tiny coalescer training failed:\n{proc.stdout}\n{proc.stderr}")
    return out


@pytest.mark.skipif(not COALESCE_CLI or not Path(COALESCE_CLI).exists(),
                    reason="needs COALESCE_CLI (the coalesce binary; `make test-python` sets it)")
def test_cli_and_library_give_identical_pixels(coalescer_model, tmp_path):
    """`coalesce generate` (in-process Swift, no plugin) and libcoalesce with the coalescer plugin."""
    plugin_dir = os.environ.get("COALESCE_CLI_PLUGIN_DIR", str(Path(COALESCE_CLI).parent))
    if not (Path(plugin_dir) / "libCoalescerBackend.so").exists():
        pytest.skip(f"no libCoalescerBackend.so in {plugin_dir}")
    with coalesce.Engine(plugin_dir=plugin_dir) as eng:
        eng.load_model("coalescer", coalescer_model)
        for prompt, seed, steps, count in [("a sneaker", 42, 2, 4), ("", 7, 1, 3), ("a bag", 123, -1, 5)]:
            out = tmp_path / f"cli-{seed}"
            subprocess.run([COALESCE_CLI, "generate", "--model", "coalescer", "--models-dir",
                            str(coalescer_model.parent), "--prompt", prompt, "--seed", str(seed),
                            "--steps", "auto" if steps == -1 else str(steps), "--count", str(count),
                            "--out", str(out)], check=True, capture_output=True)
            lib = eng.generate("coalescer", prompt=prompt, seed=seed, steps=steps, count=count)
            cli = np.stack([coalesce.read_png(out / f"{i:05d}.png") for i in range(count)])
            np.testing.assert_array_equal(cli, lib)
