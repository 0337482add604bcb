"""End-to-end tests of coalesced: a REAL daemon process, the REAL test-pattern plugin, real sockets.

Where things are: $COALESCED (the daemon binary; default .build/release/coalesced) and
$COALESCE_PLUGIN_DIR (directory holding libTestPatternBackend.so; default the binary's directory).
Each test starts its own daemon on a free tcp port and a private ipc endpoint, over a temporary
model repository, and stops it with SIGTERM (checking it exits 0).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
import zmq

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "Bindings/python"))
from coalesce_client import Client, CoalesceError, pb  # noqa: E402

COALESCED = Path(os.environ.get("COALESCED", REPO / ".build/release/coalesced"))
PLUGINS = Path(os.environ.get("COALESCE_PLUGIN_DIR", COALESCED.parent))
COALESCER_WEIGHTS = REPO / "models/coalescer/coalescer.safetensors"

pytestmark = pytest.mark.skipif(
    not COALESCED.exists() or not (PLUGINS / "libTestPatternBackend.so").exists(),
    reason=f"build coalesced and TestPatternBackend first (looked for {COALESCED} and {PLUGINS})")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_model(repo: Path, name: str, **config) -> None:
    d = repo / name
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"backend": "test-pattern", "revision": "1", "default_steps": 4, "step_delay_ms": 0}
    cfg.update(config)
    tmp = d / "config.json.tmp"
    tmp.write_text(json.dumps(cfg))
    tmp.replace(d / "config.json")  # atomic: a concurrent load never reads half a file


class Daemon:
    """A coalesced process over a temporary model repository."""

    def __init__(self, tmp_path: Path, *args: str, models: dict | None = None, probe: bool = True,
                 env: dict | None = None):
        self.repo = tmp_path / "models"
        self.repo.mkdir()
        for name, cfg in (models or {"tp": {}}).items():
            if cfg.get("backend") == "coalescer":  # the committed weights, linked into the repository
                (self.repo / name).mkdir()
                (self.repo / name / "coalescer.safetensors").symlink_to(COALESCER_WEIGHTS)
            write_model(self.repo, name, **cfg)
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.admin = f"ipc://{tmp_path}/admin.ipc"
        self.log = open(tmp_path / "coalesced.log", "w+")
        self.proc = subprocess.Popen(
            [str(COALESCED), "--models", str(self.repo), "--plugins", str(PLUGINS), "--endpoint", self.endpoint,
             "--admin-endpoint", self.admin, *args], stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 20
        if not probe:  # e.g. CURVE: a plaintext probe gets no reply; wait for the log line instead
            while "ready" not in self.logs():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"coalesced did not start:\n{self.logs()}")
                time.sleep(0.05)
            return
        with Client(self.endpoint, timeout=0.5) as c:
            while True:
                try:
                    if c.health().live:
                        return
                except CoalesceError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"coalesced did not start:\n{self.logs()}")

    def client(self, **kw) -> Client:
        return Client(self.endpoint, **{"timeout": 10, **kw})

    def admin_client(self) -> Client:
        return Client(self.admin, timeout=10)

    def logs(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture
def daemon_factory(tmp_path):
    started = []

    def make(*args, models=None, _probe=True, env=None):
        sub = tmp_path / f"d{len(started)}"
        sub.mkdir()
        d = Daemon(sub, *args, models=models, probe=_probe, env=env)
        started.append(d)
        return d

    yield make
    for d in started:
        rc = d.stop()
        assert rc == 0, f"coalesced exited {rc}:\n{d.logs()}"


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


def make_generate(model="tp", **fields) -> pb.Request:
    r = pb.Request()
    r.generate.model = model
    for k, v in fields.items():
        setattr(r.generate, k, v)
    return r


_finals: dict = {}


def final_reply(c: Client, rid: str, timeout=10.0) -> pb.Reply:
    """The final reply for rid; final replies for other ids seen meanwhile are kept for later calls."""
    box = _finals.setdefault(id(c), {})
    deadline = time.monotonic() + timeout
    while rid not in box and time.monotonic() < deadline:
        r = c.recv(deadline - time.monotonic())
        if r is not None and r.WhichOneof("kind") != "progress":
            assert r.id not in box, f"second final reply for {r.id}"
            box[r.id] = r
    if rid not in box:
        raise AssertionError(f"no final reply for {rid}")
    return box.pop(rid)


# ---- generation -----------------------------------------------------------------------------

def test_generation_is_deterministic_and_seeded(daemon):
    with daemon.client() as c:
        a = c.generate("tp", prompt="a shirt", seed=42, count=3)
        b = c.generate("tp", prompt="a shirt", seed=42, count=3)
        assert (a.width, a.height, a.channels, len(a.images)) == (28, 28, 1, 3)
        assert a.images == b.images
        assert a.backend == "test-pattern" and a.revision == "1"
        for i in range(3):  # image i of a request == a one-image request with seed + i
            assert c.generate("tp", prompt="a shirt", seed=42 + i).images[0] == a.images[i]
        assert c.generate("tp", prompt="a shoe", seed=42, count=3).images != a.images
        arr = a.array()
        assert arr.shape == (3, 28, 28) and arr.dtype.name == "uint8" and arr.std() > 0


def test_png_format_decodes_to_the_raw_pixels(daemon):
    with daemon.client() as c:
        raw = c.generate("tp", seed=7).images[0]
        png = c.generate("tp", seed=7, format="png").images[0]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h, depth, color = struct.unpack(">IIBB", png[16:26])
    assert (w, h, depth, color) == (28, 28, 8, 0)
    idat, pos = b"", 8
    while pos < len(png):
        n, = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + data) & 0xFFFFFFFF == struct.unpack(">I", png[pos + 8 + n:pos + 12 + n])[0]
        if kind == b"IDAT":
            idat += data
        pos += 12 + n
    assert unfilter_png_rows(zlib.decompress(idat), width=28, height=28) == raw


def unfilter_png_rows(data: bytes, width: int, height: int) -> bytes:
    """Undoes PNG scanline filters (types 0-4, PNG spec section 9) for 8-bit gray."""
    out, prev = bytearray(), bytearray(width)
    for y in range(height):
        kind, line = data[y * (width + 1)], bytearray(data[y * (width + 1) + 1:(y + 1) * (width + 1)])
        for x in range(width):
            a = line[x - 1] if x else 0
            b, c = prev[x], (prev[x - 1] if x else 0)
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            else:
                assert kind == 0, kind
        out += line
        prev = line
    return bytes(out)


def read_gray_png(path: Path) -> bytes:
    """Pixels of an 8-bit gray PNG file (no external decoder: chunks, zlib, unfilter)."""
    png = path.read_bytes()
    w, h, depth, color = struct.unpack(">IIBB", png[16:26])
    assert (depth, color) == (8, 0)
    idat, pos = b"", 8
    while pos < len(png):
        n, = struct.unpack(">I", png[pos:pos + 4])
        if png[pos + 4:pos + 8] == b"IDAT":
            idat += png[pos + 8:pos + 8 + n]
        pos += 12 + n
    return unfilter_png_rows(zlib.decompress(idat), width=w, height=h)


COALESCE_CLI = Path(os.environ.get("COALESCE_CLI", COALESCED.parent / "coalesce"))


@pytest.mark.skipif(not COALESCE_CLI.exists(), reason=f"build the coalesce CLI first ({COALESCE_CLI})")
def test_cli_remote_gives_the_same_pixels_as_the_client(daemon, tmp_path):
    with daemon.client() as c:
        want = c.generate("tp", prompt="a coat", seed=11, steps=3, count=3).images
    out = tmp_path / "cli"
    r = subprocess.run([str(COALESCE_CLI), "generate", "--remote", daemon.endpoint, "--model", "tp",
                        "--prompt", "a coat", "--seed", "11", "--steps", "3", "--count", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [read_gray_png(out / f"{i:05d}.png") for i in range(3)] == want
    # An unknown model is a clear error from the daemon, not a crash.
    r = subprocess.run([str(COALESCE_CLI), "generate", "--remote", daemon.endpoint, "--model", "nope",
                        "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "NOT_FOUND" in r.stderr and "nope" in r.stderr


def test_progress_messages_then_one_final_reply(daemon):
    seen = []
    with daemon.client() as c:
        r = c.generate("tp", steps=6, on_progress=lambda s, t: seen.append((s, t)))
    assert seen == [(s, 6) for s in range(1, 7)]
    assert len(r.images) == 1


def test_list_health_metrics(daemon):
    with daemon.client() as c:
        models = c.list_models()
        assert [m.name for m in models.loaded] == ["tp"] and list(models.available) == ["tp"]
        h = c.health()
        assert h.live and h.ready and not h.draining and h.models_loaded == 1
        c.generate("tp", count=2)
        with pytest.raises(CoalesceError):
            c.generate("tp", count=0, steps=1000)
        m = c.metrics()
        outcomes = {o.outcome: o.count for o in m.requests_by_outcome}
        assert outcomes[pb.OK] == 1 and outcomes[pb.INVALID_ARGUMENT] == 1
        assert m.latency_count == 2 and m.latency[-1].count == 2 and m.latency[-1].le_ms == float("inf")
        assert [(p.model, p.requests, p.images, p.errors) for p in m.per_model] == [("tp", 2, 2, 1)]


# ---- bad input: an error reply each, daemon stays up ---------------------------------------

BAD_INPUTS = {
    "garbage bytes": b"\xff\xfe\xfd not protobuf",
    "truncated": make_generate(prompt="x" * 50).SerializeToString()[:-10],
    "unknown top-level field": pb.Request(id="u1").SerializeToString() + b"\xa8\x06\x01",  # field 101 varint
    "unknown field in generate": make_generate().SerializeToString()[:-0] + b"",  # replaced below
    "wrong wire type for id": b"\x08\x05",  # field 1 (string) sent as a varint
    "no operation": pb.Request(id="nop").SerializeToString(),
    "empty message": b"",
}


def _unknown_in_generate() -> bytes:
    inner = make_generate(prompt="p").generate.SerializeToString() + b"\xf8\x07\x01"  # field 127 varint
    return b"\x0a\x02g1" + b"\x52" + bytes([len(inner)]) + inner  # id="g1", field 10 (generate)


BAD_INPUTS["unknown field in generate"] = _unknown_in_generate()


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_bytes_get_an_error_reply(daemon, name):
    with daemon.client() as c:
        c.send_raw(BAD_INPUTS[name])
        r = c.recv(5)
        assert r is not None, f"no reply to {name}"
        assert r.WhichOneof("kind") == "error" and r.error.code == pb.INVALID_ARGUMENT, r
        assert r.error.message
        # Still serving.
        assert len(c.generate("tp").images) == 1


def test_fuzzed_messages_each_get_one_final_reply(daemon):
    """600 random or mutated messages: every one gets exactly one final reply, the daemon stays up."""
    import random
    rng = random.Random(1234)
    seeds = [make_generate(prompt="fuzz", seed=5, count=2).SerializeToString(),
             pb.Request(id="h", health=pb.HealthRequest()).SerializeToString(),
             pb.Request(id="c", cancel=pb.CancelRequest(target_id="x")).SerializeToString(),
             pb.Request(id="l", load_model=pb.LoadModelRequest(name="tp")).SerializeToString()]
    msgs = []
    for i in range(600):
        if i % 3 == 0:
            msgs.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))))
        else:
            m = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                m[rng.randrange(len(m))] = rng.getrandbits(8)
            msgs.append(bytes(m))
    with daemon.client() as c:
        finals = 0
        for m in msgs:
            c.send_raw(m)
            while True:
                r = c.recv(5)
                assert r is not None, f"no reply to {m!r}"
                if r.WhichOneof("kind") != "progress":
                    finals += 1
                    break
        assert finals == len(msgs)
        assert c.health().live and len(c.generate("tp").images) == 1
        assert c.metrics().malformed > 100


def test_huge_and_multiframe_messages(daemon_factory):
    d = daemon_factory("--max-message-bytes", "65536")
    with d.client() as c:
        c.send_raw(make_generate(prompt="x" * 100_000).SerializeToString())
        r = c.recv(5)
        assert r.error.code == pb.INVALID_ARGUMENT and "limit is 65536" in r.error.message
        c._sock.send_multipart([b"a", b"b", b"c"])
        r = c.recv(5)
        assert r.error.code == pb.INVALID_ARGUMENT and "frame" in r.error.message
        assert len(c.generate("tp").images) == 1


def test_requests_outside_limits(daemon):
    with daemon.client() as c:
        cases = [
            (dict(model="nope"), pb.NOT_FOUND),
            (dict(model="../etc"), pb.NOT_FOUND),
            (dict(count=100000), pb.INVALID_ARGUMENT),
            (dict(count=-3), pb.INVALID_ARGUMENT),
            (dict(steps=100000), pb.INVALID_ARGUMENT),
            (dict(prompt="p" * 5000), pb.INVALID_ARGUMENT),
        ]
        for kw, code in cases:
            with pytest.raises(CoalesceError) as e:
                c.generate(**{"model": "tp", **kw})
            assert e.value.code == code, (kw, e.value)
        req = pb.Request(id="x" * 500)
        req.health.SetInParent()
        c.send(req)
        r = c.recv(5)
        assert r.error.code == pb.INVALID_ARGUMENT and "id" in r.error.message
        assert c.health().live


def _header_constant(name: str) -> int:
    for line in (REPO / "Include/coalesce.h").read_text().splitlines():
        parts = line.split()
        if parts[:2] == ["#define", name]:
            return int(parts[2])
    raise AssertionError(f"{name} not in coalesce.h")


def test_limits_at_their_bounds_as_in_the_c_library(daemon):
    """coalesce.h's limits are the daemon's: at each bound a request succeeds, just above it is
    INVALID_ARGUMENT with the same message as cz_generate's (Bindings/c/test_api.c)."""
    max_steps, max_guidance = _header_constant("CZ_MAX_STEPS"), _header_constant("CZ_MAX_GUIDANCE")
    with daemon.client() as c:
        assert len(c.generate("tp", steps=max_steps).images) == 1
        assert len(c.generate("tp", guidance=float(max_guidance)).images) == 1
        with pytest.raises(CoalesceError) as e:
            c.generate("tp", steps=max_steps + 1)
        assert e.value.code == pb.INVALID_ARGUMENT
        assert str(e.value.message) == "steps must be in 1...64, or 0 for the default (4) or -1 for auto; got 65"
        with pytest.raises(CoalesceError) as e:
            c.generate("tp", guidance=max_guidance + 0.5)
        assert e.value.code == pb.INVALID_ARGUMENT
        assert str(e.value.message) == \
            "guidance must be a finite number in 0...100 (0 = the model's default), got 100.5"
        max_prompt = _header_constant("CZ_MAX_PROMPT_BYTES")
        assert len(c.generate("tp", prompt="p" * max_prompt).images) == 1
        with pytest.raises(CoalesceError) as e:
            c.generate("tp", prompt="p" * (max_prompt + 1))
        assert e.value.code == pb.INVALID_ARGUMENT
        assert str(e.value.message) == f"prompt is longer than {max_prompt} bytes"


def _ld(field: int, data: bytes) -> bytes:
    """One length-delimited protobuf field (tag, length, bytes), for strings protobuf would refuse."""
    def varint(n: int) -> bytes:
        out = b""
        while True:
            out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                return out
    return varint(field << 3 | 2) + varint(len(data)) + data


def raw_request(rid: bytes, kind: int, *fields: bytes) -> bytes:
    """Request{id = rid, field `kind` = a message made of `fields`} (10 generate, 12 load_model,
    13 unload_model, 14 health, 16 cancel)."""
    return _ld(1, rid) + _ld(kind, b"".join(fields))


def raw_reply(c: Client, data: bytes) -> pb.Reply:
    c.send_raw(data)
    r = c.recv(5)
    assert r is not None, f"no reply to {data!r}"
    return r


def test_strings_must_be_utf8_without_nul(daemon):
    """Every string field: a NUL byte or invalid UTF-8 is INVALID_ARGUMENT naming the field (never
    truncated at the NUL, never repaired); an id that cannot be echoed exactly is answered with id ""."""
    gen = lambda model=b"tp", prompt=b"p": raw_request(b"g", 10, _ld(1, model), _ld(2, prompt))  # noqa: E731
    cases = {
        "model with NUL": (gen(model=b"tp\x00../../etc/passwd"), "generate.model", "NUL"),
        "model not UTF-8": (gen(model=b"tp\xff"), "generate.model", "UTF-8"),
        "prompt not UTF-8": (gen(prompt=b"ab\xff\xfe"), "generate.prompt", "UTF-8"),
        "prompt with NUL": (gen(prompt=b"shirt\x00shoe"), "generate.prompt", "NUL"),
        "overlong encoding": (gen(prompt=b"x\xc0\x80"), "generate.prompt", "UTF-8"),
        "surrogate": (gen(prompt=b"\xed\xa0\x80"), "generate.prompt", "UTF-8"),
        "cancel target": (raw_request(b"g", 16, _ld(1, b"x\xfe")), "cancel.target_id", "UTF-8"),
    }
    with daemon.client() as c:
        for what, (data, field, problem) in cases.items():
            r = raw_reply(c, data)
            assert r.WhichOneof("kind") == "error" and r.error.code == pb.INVALID_ARGUMENT, (what, r)
            assert field in r.error.message and problem in r.error.message, (what, r.error.message)
            assert r.id == "g", (what, r.id)
        for rid in (b"id\xff", b"ab\x00cd", b"\xf4\x90\x80\x80"):  # invalid, NUL, above U+10FFFF
            r = raw_reply(c, raw_request(rid, 14))
            assert r.WhichOneof("kind") == "error" and r.error.code == pb.INVALID_ARGUMENT, (rid, r)
            assert r.id == "" and "id" in r.error.message, (rid, r)
        # Valid UTF-8 comes back byte for byte, up to the limit of 128 bytes.
        for rid in ("идентификатор ✓ 😀", "é" * 64):
            r = raw_reply(c, raw_request(rid.encode(), 14))
            assert r.WhichOneof("kind") == "health" and r.id == rid, r
        r = raw_reply(c, raw_request("é".encode() * 64 + b"x", 14))
        assert r.error.code == pb.INVALID_ARGUMENT and "129 bytes" in r.error.message and "128" in r.error.message
        assert len(c.generate("tp", prompt="ünïcødé ✓").images) == 1
    with daemon.admin_client() as a:
        for kind, field in ((12, "load_model.name"), (13, "unload_model.name")):
            for name in (b"tp\x00/../../x", b"tp\xff"):
                r = raw_reply(a, raw_request(b"a", kind, _ld(1, name)))
                assert r.error.code == pb.INVALID_ARGUMENT and field in r.error.message, (kind, name, r)
        assert a.list_models().loaded[0].generation == 1, "nothing was reloaded"


def test_one_name_limit_for_every_request_kind(daemon):
    """Model names: 128 bytes in generate, load_model and unload_model alike (proto comments, DAEMON.md)."""
    with daemon.client() as c, daemon.admin_client() as a:
        for kind, field, client in ((10, "generate.model", c), (12, "load_model.name", a),
                                    (13, "unload_model.name", a)):
            r = raw_reply(client, raw_request(b"n", kind, _ld(1, b"m" * 129)))
            assert r.error.code == pb.INVALID_ARGUMENT, (field, r)
            assert field in r.error.message and "128" in r.error.message, (field, r.error.message)
            r = raw_reply(client, raw_request(b"n", kind, _ld(1, b"m" * 128)))
            assert r.error.code == pb.NOT_FOUND, (field, r)  # within the limit: simply not there


def _second_daemon(tmp_path: Path, admin: str, name: str) -> subprocess.Popen:
    """Another coalesced over the same repository layout, on its own tcp port, with admin endpoint `admin`."""
    repo = tmp_path / f"{name}-models"
    repo.mkdir()
    write_model(repo, "tp")
    log = open(tmp_path / f"{name}.log", "w+")
    return subprocess.Popen([str(COALESCED), "--models", str(repo), "--plugins", str(PLUGINS), "--endpoint",
                             f"tcp://127.0.0.1:{free_port()}", "--admin-endpoint", admin],
                            stdout=log, stderr=subprocess.STDOUT)


def test_second_daemon_on_a_served_admin_endpoint_refuses_to_start(daemon, tmp_path):
    p = _second_daemon(tmp_path, daemon.admin, "second")
    try:
        rc = p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        raise AssertionError("a second daemon started on an admin endpoint that is in use")
    out = (tmp_path / "second.log").read_text()
    assert rc == 1 and "already served" in out, (rc, out)
    assert "worker started" not in out, out  # refused before it started anything
    with daemon.admin_client() as a:  # the first daemon's admin endpoint still answers
        assert a.load_model("tp").generation == 2
    with daemon.client() as c:
        assert len(c.generate("tp").images) == 1


def test_stale_admin_socket_of_a_dead_daemon_is_taken_over(tmp_path):
    (tmp_path / "dead").mkdir()
    first = Daemon(tmp_path / "dead")
    first.proc.kill()  # SIGKILL: its socket file stays behind
    first.proc.wait(10)
    path = first.admin[len("ipc://"):]
    assert os.path.exists(path)
    p = _second_daemon(tmp_path, first.admin, "successor")
    try:
        with Client(first.admin, timeout=10) as a:
            deadline = time.monotonic() + 20
            while True:
                try:
                    assert a.load_model("tp").generation == 2
                    break
                except CoalesceError:
                    assert p.poll() is None and time.monotonic() < deadline, (tmp_path / "successor.log").read_text()
        assert "stale socket" in (tmp_path / "successor.log").read_text()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0


# ---- scheduling ---------------------------------------------------------------------------

def test_full_queue_answers_resource_exhausted_at_once(daemon_factory):
    d = daemon_factory("--max-queue", "2", "--max-queue-per-model", "2", "--calls-per-model", "1", "--max-batch", "1",
                       models={"slow": {"step_delay_ms": 50}})
    with d.client() as c:
        # The first request is running (its first progress message says so) before the rest are
        # sent; otherwise, on a loaded machine, it may still sit in the queue and take a slot.
        first = c.send(make_generate("slow", want_progress=True))
        while True:
            r = c.recv(10)
            assert r is not None and r.id == first
            if r.WhichOneof("kind") == "progress":
                break
        ids = [first] + [c.send(make_generate("slow")) for _ in range(7)]
        finals, order = {}, []
        while len(finals) < len(ids):
            r = c.recv(10)
            assert r is not None
            if r.WhichOneof("kind") == "progress":
                continue
            finals[r.id] = r
            order.append(r.WhichOneof("kind"))
        kinds = [finals[i].WhichOneof("kind") for i in ids]
        codes = {finals[i].error.code for i in ids if finals[i].WhichOneof("kind") == "error"}
        assert kinds.count("images") == 3  # the running one + two queued
        assert codes == {pb.RESOURCE_EXHAUSTED}
        # Refused at once: every refusal arrives before the first image (a request takes 200 ms).
        assert order.index("images") == len(ids) - kinds.count("images"), order


def flood_then_ask_another_model(d, flood: int) -> tuple[dict, dict]:
    """Sends `flood` requests for the slow model "slow" (one already running, each expiring after
    1.5 s), then three for "fast". Returns the final replies of both, by id."""
    with d.client() as c:
        first = c.send(make_generate("slow", want_progress=True, timeout_ms=1500))
        while True:  # running before the flood, so it holds no place in the queue
            r = c.recv(10)
            assert r is not None and r.id == first
            if r.WhichOneof("kind") == "progress":
                break
        slow = [c.send(make_generate("slow", timeout_ms=1500)) for _ in range(flood)]
        fast = [c.send(make_generate("fast", seed=s)) for s in range(3)]
        finals = {}
        while len(finals) < 1 + flood + len(fast):
            r = c.recv(10)
            assert r is not None, finals
            if r.WhichOneof("kind") != "progress":
                finals[r.id] = r
        return {i: finals[i] for i in slow}, {i: finals[i] for i in fast}


def test_a_flooded_model_gets_only_its_share_of_the_queue(daemon_factory):
    """One model flooded with requests it serves slowly (a stuck or overloaded backend) holds at
    most its share of the queue (--max-queue-per-model, by default half of --max-queue); beyond it
    its requests are refused at once with RESOURCE_EXHAUSTED naming it, and another model's
    requests still find room and are served. With the share equal to --max-queue (no share), the
    flood fills the queue and the other model is refused too."""
    models = {"slow": {"step_delay_ms": 100, "default_steps": 20}, "fast": {}}
    args = ("--max-queue", "8", "--calls-per-model", "1", "--max-batch", "1")

    d = daemon_factory(*args, models=models)  # default share: 4 of 8
    slow, fast = flood_then_ask_another_model(d, flood=12)
    refused = [r for r in slow.values() if r.WhichOneof("kind") == "error" and r.error.code == pb.RESOURCE_EXHAUSTED]
    assert len(refused) == 12 - 4, [r.error.message for r in slow.values()]
    assert all('model "slow" has 4 requests waiting' in r.error.message and "--max-queue-per-model" in r.error.message
               for r in refused), refused[0].error.message
    assert [r.WhichOneof("kind") for r in fast.values()] == ["images"] * 3, list(fast.values())

    d = daemon_factory(*args, "--max-queue-per-model", "8", models=models)
    slow, fast = flood_then_ask_another_model(d, flood=12)
    refused = [r for r in slow.values() if r.WhichOneof("kind") == "error" and r.error.code == pb.RESOURCE_EXHAUSTED]
    assert len(refused) == 12 - 8
    assert {(r.WhichOneof("kind"), r.error.code) for r in fast.values()} == {("error", pb.RESOURCE_EXHAUSTED)}
    assert all("queue full (8 requests waiting)" in r.error.message for r in fast.values())


@pytest.mark.parametrize("share", ["0", "9", "-1"])
def test_a_queue_share_outside_the_queue_refuses_to_start(tmp_path, share):
    write_model(tmp_path / "m", "tp")
    p = subprocess.run([str(COALESCED), "--models", str(tmp_path / "m"), "--plugins", str(PLUGINS),
                        "--endpoint", f"tcp://127.0.0.1:{free_port()}", "--admin-endpoint", f"ipc://{tmp_path}/a.ipc",
                        "--max-queue", "8", "--max-queue-per-model", share],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=20)
    assert p.returncode != 0 and "--max-queue-per-model" in p.stdout, (p.returncode, p.stdout)
    assert "model loaded" not in p.stdout, p.stdout


def test_deadline_and_cancel(daemon_factory):
    d = daemon_factory("--calls-per-model", "1", "--max-batch", "1", models={"slow": {"step_delay_ms": 30}})
    with d.client() as c:
        with pytest.raises(CoalesceError) as e:
            c.generate("slow", steps=20, timeout_ms=100)
        assert e.value.code == pb.DEADLINE_EXCEEDED
        # Cancel a running request and a queued one.
        running = c.send(make_generate("slow", steps=30))
        queued = c.send(make_generate("slow", steps=30))
        time.sleep(0.1)
        for rid in (queued, running):
            req = pb.Request()
            req.cancel.target_id = rid
            ack = final_reply(c, c.send(req))
            assert ack.WhichOneof("kind") == "ack", ack
        for rid in (running, queued):
            r = final_reply(c, rid)
            assert r.error.code == pb.CANCELLED, r
        req = pb.Request()
        req.cancel.target_id = "no-such-id"
        assert final_reply(c, c.send(req)).error.code == pb.NOT_FOUND


@pytest.mark.parametrize("isolation", ["process", "in-process"])
def test_deadline_is_answered_at_the_deadline_not_at_the_next_step(daemon_factory, isolation):
    """A request whose deadline passes before its first backend step (timeout_ms=1) or in the
    middle of a step is answered DEADLINE_EXCEEDED then, not when the backend reaches its next step
    (1 s here); nothing follows the final reply, and the model serves the next request."""
    d = daemon_factory("--isolation", isolation, models={"slow": {"step_delay_ms": 1000}})
    with d.client() as c:
        # After a step: the step is reported, then the deadline, then nothing.
        t0 = time.monotonic()
        rid = c.send(make_generate("slow", steps=4, timeout_ms=1500, want_progress=True))
        r = c.recv(5)
        assert r is not None and r.id == rid and r.WhichOneof("kind") == "progress" and r.progress.step == 1, r
        r = c.recv(5)
        took = time.monotonic() - t0
        assert r is not None and r.id == rid and r.error.code == pb.DEADLINE_EXCEEDED, r
        assert "after step 1 of 4" in r.error.message and took < 1.5 + 0.3, (took, r.error.message)
        assert c.recv(1.0) is None  # the backend's step 2 (at 2 s) reports nothing
        # Before the first step (a worker thread each: the backend still spends its step).
        for timeout_ms in (1, 300):
            t0 = time.monotonic()
            with pytest.raises(CoalesceError) as e:
                c.generate("slow", steps=4, timeout_ms=timeout_ms)
            took = time.monotonic() - t0
            assert e.value.code == pb.DEADLINE_EXCEEDED, e.value
            assert took < timeout_ms / 1000 + 0.3, (timeout_ms, took, e.value.message)
        assert len(c.generate("slow", steps=1).images) == 1


@pytest.mark.parametrize("isolation", ["process", "in-process"])
def test_cancel_of_a_running_request_is_answered_at_once(daemon_factory, isolation):
    """A running request (100 ms steps) is answered CANCELLED when its cancel arrives, within one
    step + 20 ms (in a worker process it used to take two steps), and nothing follows; the backend
    call ends at the backend's next step (in_flight is 0 again within a step + 50 ms, median of 3),
    and the model serves the next request."""
    d = daemon_factory("--isolation", isolation, "--calls-per-model", "1", "--max-batch", "1",
                       models={"slow": {"step_delay_ms": 100}})
    answered, ended = [], []
    with d.client() as c, d.client() as probe:
        for k in range(3):
            rid = c.send(make_generate("slow", steps=30, seed=k, want_progress=True))
            r = c.recv(5)
            assert r is not None and r.id == rid and r.WhichOneof("kind") == "progress" and r.progress.step == 1, r
            t0 = time.monotonic()
            cancel = pb.Request(id=f"cancel-{k}")
            cancel.cancel.target_id = rid
            c.send(cancel)
            finals = {}
            while len(finals) < 2:
                r = c.recv(5)
                assert r is not None, finals
                if r.WhichOneof("kind") == "progress":
                    assert rid not in finals, "progress after the final reply"
                    continue
                finals[r.id] = r
                if r.id == rid:
                    answered.append(time.monotonic() - t0)
            assert finals[rid].error.code == pb.CANCELLED, finals[rid]
            assert finals[f"cancel-{k}"].WhichOneof("kind") == "ack", finals
            while probe.metrics().in_flight:
                time.sleep(0.002)
            ended.append(time.monotonic() - t0)
            assert c.recv(0.15) is None  # nothing after the final reply
        assert len(c.generate("slow", steps=1).images) == 1
    print(f"{isolation}: CANCELLED after {[round(t * 1000) for t in answered]} ms, "
          f"backend call ended after {[round(t * 1000) for t in ended]} ms (100 ms steps)")
    assert max(answered) < 0.1 + 0.02, answered
    assert sorted(ended)[1] < 0.1 + 0.05, ended


def test_concurrent_requests_are_batched_and_identical(daemon_factory):
    d = daemon_factory("--calls-per-model", "1", "--max-batch", "8", "--max-delay-ms", "20",
                       models={"tp": {"step_delay_ms": 5}})
    with d.client() as c:
        ids = {c.send(make_generate("tp", seed=s, prompt="batch")): s for s in range(16)}
        got = {}
        while len(got) < 16:
            r = c.recv(10)
            assert r is not None
            got[r.id] = r
        assert all(r.WhichOneof("kind") == "images" for r in got.values())
        assert max(r.images.batch_requests for r in got.values()) > 1
        for rid, s in list(ids.items())[:4]:
            assert got[rid].images.images[0] == c.generate("tp", seed=s, prompt="batch").images[0]
        m = c.metrics()
        assert m.batched_requests > m.batches


@pytest.mark.skipif(not COALESCER_WEIGHTS.exists() or not (PLUGINS / "libCoalescerBackend.so").exists(),
                    reason="needs the coalescer plugin and the committed weights")
def test_same_pixels_at_any_batch_size_and_thread_count(daemon_factory):
    """Every backend: seeds 1000..1063 as one-image requests, as requests of 3, 8, 17 and 64 images,
    and as 64 concurrent one-image requests (dynamically batched), on daemons with 1 and 2 compute
    threads: byte-identical images."""
    models = {"co": {"backend": "coalescer", "weights": "coalescer.safetensors", "default_steps": 2}, "tp": {}}
    seeds = range(1000, 1064)
    results = {}
    for threads in ("1", "2"):
        d = daemon_factory("--calls-per-model", "1", "--max-batch", "64", "--max-delay-ms", "20", models=models,
                           env={"COALESCE_THREADS": threads})
        with d.client() as c:
            for model in models:
                results[(model, threads, 1)] = [c.generate(model, prompt="sneaker", seed=s, steps=2).images[0]
                                                for s in seeds]
                for batch in (3, 8, 17, 64):
                    imgs = []
                    for s0 in range(seeds.start, seeds.stop, batch):
                        imgs += c.generate(model, prompt="sneaker", seed=s0, steps=2,
                                           count=min(batch, seeds.stop - s0)).images
                    results[(model, threads, batch)] = imgs
                ids = {c.send(make_generate(model, prompt="sneaker", seed=s, steps=2)): s for s in seeds}
                got = {}
                while len(got) < len(ids):
                    r = c.recv(20)
                    assert r is not None and r.WhichOneof("kind") == "images", r
                    got[r.id] = r
                assert max(r.images.batch_requests for r in got.values()) > 1, "requests were not batched"
                assert all(r.images.revision for r in got.values()), f"{model}: empty revision"
                results[(model, threads, "dynamic")] = [got[rid].images.images[0] for rid in
                                                         sorted(ids, key=ids.get)]
    for model in models:
        reference = results[(model, "1", 1)]
        assert len(set(reference)) > len(seeds) // 2, f"{model}: seeds must give different images"
        for key, imgs in results.items():
            if key[0] == model:
                differing = [s for s, a, b in zip(seeds, imgs, reference) if a != b]
                assert differing == [], f"{key}: seeds {differing} differ from one-image requests on 1 thread"


# ---- admin: load / unload / hot swap --------------------------------------------------------

def test_admin_ops_only_on_the_admin_endpoint(daemon):
    with daemon.client() as c:
        with pytest.raises(CoalesceError) as e:
            c.load_model("tp")
        assert e.value.code == pb.UNAVAILABLE
    with daemon.admin_client() as a:
        write_model(daemon.repo, "tp", revision="2")
        info = a.load_model("tp")
        assert info.revision == "2" and info.generation == 2
        write_model(daemon.repo, "tp", revision="3", fail=True)
        with pytest.raises(CoalesceError) as e:
            a.load_model("tp")
        assert e.value.code == pb.INTERNAL and "fail" in e.value.message
        with pytest.raises(CoalesceError) as e:
            a.load_model("../../etc")
        assert e.value.code == pb.INVALID_ARGUMENT
        with daemon.client() as c:
            assert c.generate("tp").revision == "2"  # the failed load kept the old one serving
            a.unload_model("tp")
            with pytest.raises(CoalesceError) as e:
                c.generate("tp")
            assert e.value.code == pb.NOT_FOUND


def test_repository_polling_reloads_loads_and_unloads(daemon_factory):
    d = daemon_factory("--poll-s", "0.1")

    def wait_for(pred, what):
        deadline = time.monotonic() + 5
        while not pred():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    with d.client() as c:
        time.sleep(0.05)
        write_model(d.repo, "tp", revision="polled")
        wait_for(lambda: c.generate("tp").revision == "polled", "changed model not reloaded")
        write_model(d.repo, "extra", revision="x")
        wait_for(lambda: "extra" in [m.name for m in c.list_models().loaded], "new model not loaded")
        import shutil
        shutil.rmtree(d.repo / "extra")
        wait_for(lambda: "extra" not in [m.name for m in c.list_models().loaded], "removed model not unloaded")
        assert c.generate("tp").revision == "polled"
        # A repository that is gone for a while (a deploy that swaps it, a failing mount) is not
        # a removal of every model: the loaded ones keep serving, and come back under the poller.
        moved = d.repo.with_name(d.repo.name + ".moved")
        d.repo.rename(moved)
        try:
            time.sleep(0.5)
            assert "tp" in [m.name for m in c.list_models().loaded]
            assert c.generate("tp").revision == "polled"
        finally:
            moved.rename(d.repo)
        write_model(d.repo, "tp", revision="back")
        wait_for(lambda: c.generate("tp").revision == "back", "model not reloaded once the repository was back")


def test_deploy_by_swapping_a_symlink_under_load(daemon_factory):
    """The deploy docs/DAEMON.md describes: each version in a directory of its own
    (models/releases/live-v1, -v2), models/live a symbolic link to one, switched by renaming a new
    link over it (`ln -s releases/live-v2 models/.live.tmp && mv -T models/.live.tmp models/live`).
    8 clients generate for ~4 s across the switch: none fails, the poller hot-swaps (generation
    up, v1 before the switch, v2 once the poller has seen it, never v1 again after v2 on one
    client), nothing is unloaded, and neither the releases folder nor the hidden temporary link
    is taken for a model. The two versions have files of the same names, sizes and modification
    times (as release artifacts with normalised timestamps have), so only the link's new target
    tells them apart. The test-pattern backend draws the same pixels for both (its pixels depend on
    seed and prompt only), so a reply's version is the revision it carries (the backend reads it
    from config.json); its pixels are checked against the first reply for the same seed."""
    d = daemon_factory("--poll-s", "0.1", "--max-batch", "4")
    releases = d.repo / "releases"
    stamp = time.time_ns() - 3_600_000_000_000
    for version in ("v1", "v2"):
        write_model(releases, f"live-{version}", revision=version, step_delay_ms=3)
        os.utime(releases / f"live-{version}" / "config.json", ns=(stamp, stamp))

    def switch(version: str) -> None:
        tmp = d.repo / ".live.tmp"
        os.symlink(f"releases/live-{version}", tmp)  # relative to the link's own directory
        os.replace(tmp, d.repo / "live")             # rename(2), what `mv -T` does: atomic

    def live(c: Client):
        return next((m for m in c.list_models().loaded if m.name == "live"), None)

    def wait_for(pred, what, seconds=5.0):
        deadline = time.monotonic() + seconds
        while not pred():
            assert time.monotonic() < deadline, f"{what}:\n{d.logs()}"
            time.sleep(0.02)

    with d.client() as c:
        switch("v1")
        wait_for(lambda: (m := live(c)) is not None and m.revision == "v1", "the linked model was not loaded")
        g1 = live(c).generation

    clients = 8
    stop = threading.Event()
    stats = [dict(replies=[], failed=[]) for _ in range(clients)]

    def worker(k):
        st = stats[k]
        with d.client(timeout=10) as c:
            i = 0
            while not stop.is_set():
                seed = k * 1000 + i % 4
                sent = time.monotonic()
                try:
                    r = c.generate("live", seed=seed)
                    st["replies"].append((sent, seed, r.revision, r.generation, r.images[0]))
                except Exception as e:  # noqa: BLE001 - every failure is recorded and asserted on
                    st["failed"].append(repr(e))
                i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        t_switch = time.monotonic()
        switch("v2")
        with d.client() as c:
            wait_for(lambda: live(c).revision == "v2", "the poller did not swap to the new link target")
            t_seen = time.monotonic()
            g2 = live(c).generation
            time.sleep(1.5)
            names = c.list_models()
    finally:
        stop.set()
        for t in threads:
            t.join(30)

    failed = [f for s in stats for f in s["failed"]]
    replies = [r for s in stats for r in s["replies"]]
    before = [r for r in replies if r[0] < t_switch]
    after = [r for r in replies if r[0] > t_seen]
    print(f"symlink deploy: {len(replies)} replies, {len(failed)} failed, {len(before)} sent before the switch, "
          f"{len(after)} after the poller swapped ({(t_seen - t_switch) * 1000:.0f} ms after the switch), "
          f"generation {g1} -> {g2}")
    assert failed == []
    assert len(before) > 50 and len(after) > 50
    assert {r[2] for r in before} == {"v1"} and {r[3] for r in before} == {g1}
    assert {r[2] for r in after} == {"v2"} and {r[3] for r in after} == {g2}
    assert g2 > g1
    for s in stats:  # one client's replies never go back to v1 once it has had v2
        revs = [r[2] for r in s["replies"]]
        if "v2" in revs:
            assert "v1" not in revs[revs.index("v2"):]
    first = {}
    for _, seed, _, _, image in replies:
        assert first.setdefault(seed, image) == image
    assert [m.name for m in names.loaded] == ["live", "tp"] and names.available == ["live", "tp"]
    logs = d.logs()
    assert "poll: unloaded removed model" not in logs
    assert "model=.live.tmp" not in logs and "model=releases" not in logs
    assert "model instance released" in logs  # the v1 instance went once its last request ended


def test_hot_swap_every_half_second_under_load(daemon_factory):
    """8 clients generate for ~10 s (COALESCE_SWAP_SECONDS=30 for the issue's full run) while the
    model is hot-swapped every 0.5 s: requests sent == replies received, none failed."""
    d = daemon_factory(models={"tp": {"step_delay_ms": 2}})
    duration, clients = float(os.environ.get("COALESCE_SWAP_SECONDS", "10")), 8
    stop = threading.Event()
    stats = [dict(sent=0, ok=0, failed=[], revisions=set()) for _ in range(clients)]

    def worker(k):
        st = stats[k]
        with d.client(timeout=10) as c:
            i = 0
            while not stop.is_set():
                st["sent"] += 1
                try:
                    r = c.generate("tp", seed=k * 100000 + i, count=2)
                    st["ok"] += 1
                    st["revisions"].add(r.revision)
                    assert len(r.images) == 2
                except Exception as e:  # noqa: BLE001 - every failure is recorded and asserted on
                    st["failed"].append(repr(e))
                i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    swaps = 0
    with d.admin_client() as a:
        t_end = time.monotonic() + duration
        while time.monotonic() < t_end:
            time.sleep(0.5)
            swaps += 1
            write_model(d.repo, "tp", revision=str(swaps + 1), step_delay_ms=2)
            assert a.load_model("tp").revision == str(swaps + 1)
    stop.set()
    for t in threads:
        t.join(30)
    sent = sum(s["sent"] for s in stats)
    ok = sum(s["ok"] for s in stats)
    failed = [f for s in stats for f in s["failed"]]
    revisions = set().union(*(s["revisions"] for s in stats))
    print(f"hot swap: {sent} requests, {ok} replies with images, {swaps} swaps, {len(revisions)} revisions seen")
    assert failed == []
    assert sent == ok and sent > 100
    assert swaps >= int(duration * 1.5) and len(revisions) >= swaps // 2
    assert "model instance released" in d.logs()  # swapped-out instances were destroyed


# ---- shutdown ------------------------------------------------------------------------------

def test_sigterm_under_load_loses_no_accepted_request(daemon_factory):
    d = daemon_factory("--max-batch", "4", "--max-queue", "1000",
                       models={"slow": {"step_delay_ms": 10, "default_steps": 4}})
    clients, per_client = 8, 20
    results = [dict() for _ in range(clients)]
    sent = [list() for _ in range(clients)]
    ready = threading.Barrier(clients + 1)

    def worker(k):
        with d.client() as c:
            for i in range(per_client):
                sent[k].append(c.send(make_generate("slow", seed=k * 1000 + i)))
            ready.wait()
            while len(results[k]) < per_client:
                r = c.recv(30)
                if r is None:
                    break
                if r.WhichOneof("kind") != "progress":
                    results[k][r.id] = r

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(0.2)  # all requests are in; some done, most queued
    d.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    rc = d.proc.wait(30)
    assert rc == 0, d.logs()
    for k in range(clients):
        assert sorted(results[k]) == sorted(sent[k]), f"client {k} lost replies"
        bad = [r for r in results[k].values() if r.WhichOneof("kind") != "images"]
        assert bad == [], bad[:3]
    assert "drained; exiting" in d.logs()


def test_requests_arriving_around_exit_get_a_final_reply(daemon_factory):
    """Requests sent during the 100 ms after SIGTERM (the daemon has nothing running, so it exits at
    once): every one reaches the daemon before it closes its sockets and gets exactly one final
    reply, images or UNAVAILABLE; none is left unanswered."""
    d = daemon_factory()
    with d.client() as c:
        assert len(c.generate("tp").images) == 1
        ids = []
        d.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.1:
            ids.append(c.send(make_generate("tp", seed=len(ids))))
            time.sleep(0.0005)
        got = {}
        while len(got) < len(ids):
            r = c.recv(3)
            if r is None:
                break
            if r.WhichOneof("kind") != "progress":
                assert r.id not in got, f"second final reply for {r.id}"
                got[r.id] = r
        assert d.proc.wait(20) == 0
        missing = [i for i in ids if i not in got]
        assert missing == [], f"{len(missing)} of {len(ids)} requests got no reply"
        assert all(r.WhichOneof("kind") == "images" or r.error.code == pb.UNAVAILABLE for r in got.values())


def test_draining_daemon_refuses_new_work(daemon_factory):
    d = daemon_factory("--calls-per-model", "1", "--max-batch", "1", models={"slow": {"step_delay_ms": 100}})
    with d.client() as c:
        first = c.send(make_generate("slow"))
        time.sleep(0.05)
        d.proc.send_signal(signal.SIGTERM)
        with d.client() as probe:  # health is still answered while draining
            deadline = time.monotonic() + 5
            while not probe.health().draining:
                assert time.monotonic() < deadline, "daemon never reported draining"
        late = c.send(make_generate("slow"))
        replies = {}
        while len(replies) < 2:
            r = c.recv(10)
            assert r is not None
            if r.WhichOneof("kind") != "progress":
                replies[r.id] = r
        assert replies[first].WhichOneof("kind") == "images"
        assert replies[late].error.code == pb.UNAVAILABLE
    assert d.proc.wait(10) == 0


def test_drain_timeout_answers_the_rest_unavailable(daemon_factory):
    d = daemon_factory("--calls-per-model", "1", "--max-batch", "1", "--drain-timeout-s", "0.3",
                       models={"slow": {"step_delay_ms": 50}})
    with d.client() as c:
        ids = [c.send(make_generate("slow", seed=i)) for i in range(20)]
        time.sleep(0.1)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        finals = {}
        while len(finals) < len(ids):
            r = c.recv(10)
            assert r is not None, f"only {len(finals)} of {len(ids)} replies"
            if r.WhichOneof("kind") != "progress":
                assert r.id not in finals
                finals[r.id] = r
        assert d.proc.wait(10) == 0
        assert time.monotonic() - t0 < 5
    kinds = [finals[i].WhichOneof("kind") for i in ids]
    assert "images" in kinds
    errors = [finals[i].error for i in ids if finals[i].WhichOneof("kind") == "error"]
    assert len(errors) >= 10 and {e.code for e in errors} == {pb.UNAVAILABLE}, errors[:3]


# ---- CurveZMQ ----------------------------------------------------------------------------

def test_curve_allow_list_and_admin_keys(daemon_factory, tmp_path):
    server_pub, server_sec = (k.decode() for k in zmq.curve_keypair())
    user_pub, user_sec = (k.decode() for k in zmq.curve_keypair())
    admin_pub, admin_sec = (k.decode() for k in zmq.curve_keypair())
    stranger_pub, stranger_sec = (k.decode() for k in zmq.curve_keypair())
    (tmp_path / "server.key").write_text(server_sec + "\n")
    (tmp_path / "clients").write_text(f"# allowed clients\n{user_pub}\n{admin_pub} admin\n")
    d = daemon_factory("--curve-secret-key-file", str(tmp_path / "server.key"),
                       "--curve-clients", str(tmp_path / "clients"), _probe=False)

    def client(pub, sec, timeout=5):
        return Client(d.endpoint, timeout=timeout, server_key=server_pub, public_key=pub, secret_key=sec)

    with client(user_pub, user_sec) as c:
        assert len(c.generate("tp", seed=3).images) == 1
        with pytest.raises(CoalesceError) as e:
            c.load_model("tp")
        assert e.value.code == pb.UNAVAILABLE
    with client(admin_pub, admin_sec) as a:
        assert a.load_model("tp").generation == 2  # admin key: load over tcp
    with client(stranger_pub, stranger_sec, timeout=1) as s:
        with pytest.raises(CoalesceError) as e:
            s.health()
        assert e.value.code == pb.DEADLINE_EXCEEDED  # refused at the handshake: no reply
    with Client(d.endpoint, timeout=1) as plain:
        with pytest.raises(CoalesceError):
            plain.health()
    assert "CURVE client refused" in d.logs()


# ---- scale-out: daemons behind `coalesced broker` -------------------------------------------

class Cluster:
    """`coalesced broker` plus daemons connected to it (`serve --endpoint "" --connect`)."""

    def __init__(self, tmp_path: Path, workers: list[dict], broker_args=(), worker_args=()):
        self.tmp = tmp_path
        self.front, self.back = free_port(), free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.front}"
        self.broker_log = tmp_path / "broker.log"
        self.broker = subprocess.Popen(
            [str(COALESCED), "broker", "--frontend", self.endpoint, "--backend", f"tcp://127.0.0.1:{self.back}",
             *broker_args], stdout=open(self.broker_log, "w"), stderr=subprocess.STDOUT)
        self.workers = []
        try:
            for k, models in enumerate(workers):
                repo = tmp_path / f"w{k}-models"
                for name, cfg in models.items():
                    write_model(repo, name, **cfg)
                self.workers.append(subprocess.Popen(
                    [str(COALESCED), "serve", "--models", str(repo), "--plugins", str(PLUGINS), "--endpoint", "",
                     "--admin-endpoint", f"ipc://{tmp_path}/w{k}.ipc", "--connect", f"tcp://127.0.0.1:{self.back}",
                     *worker_args], stdout=open(tmp_path / f"w{k}.log", "w"), stderr=subprocess.STDOUT))
            self.wait_registered(len(workers))
        except BaseException:
            self.stop()
            raise

    def wait_registered(self, n: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.broker_log.read_text().count("registered") < n:
            assert time.monotonic() < deadline, f"{n} daemon(s) did not register:\n{self.logs()}"
            assert self.broker.poll() is None, f"broker exited:\n{self.logs()}"
            time.sleep(0.05)

    def logs(self) -> str:
        out = "broker:\n" + self.broker_log.read_text()
        for k in range(len(self.workers)):
            out += f"\nworker {k}:\n" + (self.tmp / f"w{k}.log").read_text()
        return out

    def stop(self) -> None:
        procs = self.workers + [self.broker]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def cluster_factory(tmp_path):
    made = []

    def make(workers, broker_args=(), worker_args=()):
        d = tmp_path / f"c{len(made)}"
        d.mkdir()
        c = Cluster(d, workers, broker_args, worker_args)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def test_broker_routes_cancel_to_the_daemon_running_the_request(cluster_factory):
    slow = {"tp": {"step_delay_ms": 100, "default_steps": 30}}
    cl = cluster_factory([slow, slow])
    with Client(cl.endpoint, timeout=10) as c:
        for k in range(6):
            rid = c.send(make_generate("tp", seed=k, want_progress=True))
            first = c.recv(10)
            assert first is not None and first.id == rid and first.WhichOneof("kind") == "progress", first
            t0 = time.monotonic()
            cancel = pb.Request(id=f"cancel-{k}")
            cancel.cancel.target_id = rid
            c.send(cancel)
            finals = {}
            while len(finals) < 2:
                r = c.recv(10)
                assert r is not None, f"no reply ({finals})"
                if r.WhichOneof("kind") != "progress":
                    finals[r.id] = r
            assert finals[f"cancel-{k}"].WhichOneof("kind") == "ack", finals
            assert finals[rid].error.code == pb.CANCELLED, finals[rid]
            assert time.monotonic() - t0 < 1.0, "cancel took longer than a few backend steps"


def test_broker_one_daemon_killed_under_8_clients_loses_nothing(cluster_factory):
    """Eight lazy-pirate clients through the broker; one of two daemons is SIGKILLed a third of the
    way in. The broker answers UNAVAILABLE for what the dead daemon held, clients resend at once,
    and every request gets its image with the right pixels. COALESCE_BROKER_SECONDS (default 6)."""
    seconds = float(os.environ.get("COALESCE_BROKER_SECONDS", "6"))
    model = {"tp": {"step_delay_ms": 10}}
    cl = cluster_factory([model, model])
    with Client(cl.endpoint, timeout=5) as c:
        expected = {s: c.generate("tp", seed=s).images[0] for s in range(4)}
    stop = threading.Event()
    stats = [dict(sent=0, ok=0, failed=[]) for _ in range(8)]

    def client(k):
        with Client(cl.endpoint, timeout=5.0, retries=5) as c:
            i = 0
            while not stop.is_set():
                stats[k]["sent"] += 1
                try:
                    r = c.generate("tp", seed=i % 4)
                    assert r.images[0] == expected[i % 4]
                    stats[k]["ok"] += 1
                except Exception as e:  # noqa: BLE001
                    stats[k]["failed"].append(repr(e))
                i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(seconds / 3)
    cl.workers[0].kill()
    time.sleep(seconds * 2 / 3)
    stop.set()
    for t in threads:
        t.join(30)
    assert [f for s in stats for f in s["failed"]] == []
    assert sum(s["ok"] for s in stats) == sum(s["sent"] for s in stats) > 40
    assert "is gone" in cl.broker_log.read_text()
    assert cl.workers[1].poll() is None


def test_broker_sends_more_to_the_faster_daemon(cluster_factory):
    """A daemon with 20 ms steps and one with 2 ms steps (same model name, revisions tell them
    apart), 8 closed-loop clients for 3 s: the broker sends by free capacity, so the fast daemon
    serves several times more (round-robin would split evenly)."""
    cl = cluster_factory([{"tp": {"step_delay_ms": 20, "default_steps": 2, "revision": "slow"}},
                          {"tp": {"step_delay_ms": 2, "default_steps": 2, "revision": "fast"}}],
                         worker_args=("--calls-per-model", "1", "--max-batch", "1"))
    served = {"slow": 0, "fast": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        with Client(cl.endpoint, timeout=10) as c:
            while not stop.is_set():
                r = c.generate("tp")
                with lock:
                    served[r.revision] += 1

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(30)
    print(f"\nbroker load test: served {served}")
    assert served["fast"] > 3 * served["slow"] > 0, served


def test_broker_with_curve_end_to_end(cluster_factory, tmp_path):
    """CurveZMQ between clients and the broker and between the broker and the daemons: traffic
    flows for allowed keys, a stranger is refused."""
    broker_pub, broker_sec = (k.decode() for k in zmq.curve_keypair())
    daemon_pub, daemon_sec = (k.decode() for k in zmq.curve_keypair())
    user_pub, user_sec = (k.decode() for k in zmq.curve_keypair())
    stranger_pub, stranger_sec = (k.decode() for k in zmq.curve_keypair())
    (tmp_path / "broker.key").write_text(broker_sec + "\n")
    (tmp_path / "daemon.key").write_text(daemon_sec + "\n")
    (tmp_path / "broker-clients").write_text(f"{user_pub}\n{daemon_pub}\n")
    (tmp_path / "daemon-clients").write_text("")
    cl = cluster_factory([{"tp": {}}],
                         broker_args=("--curve-secret-key-file", str(tmp_path / "broker.key"),
                                      "--curve-clients", str(tmp_path / "broker-clients")),
                         worker_args=("--curve-secret-key-file", str(tmp_path / "daemon.key"),
                                      "--curve-clients", str(tmp_path / "daemon-clients"),
                                      "--curve-broker-key", broker_pub))
    with Client(cl.endpoint, timeout=5, server_key=broker_pub, public_key=user_pub, secret_key=user_sec) as c:
        assert len(c.generate("tp", seed=1, count=2).images) == 2
    with Client(cl.endpoint, timeout=1, server_key=broker_pub, public_key=stranger_pub, secret_key=stranger_sec) as s:
        with pytest.raises(CoalesceError):
            s.health()
    assert "CURVE peer refused" in cl.broker_log.read_text()


def test_broker_key_may_begin_with_a_dash(tmp_path):
    """Z85's alphabet has "-": a broker key that begins with one is read as the option's value, and
    the daemon gets as far as checking it (here refused: a broker key without the daemon's own key
    pair would silently leave the connection in the clear)."""
    write_model(tmp_path / "m", "tp")
    p = subprocess.run([str(COALESCED), "serve", "--models", str(tmp_path / "m"), "--plugins", str(PLUGINS),
                        "--endpoint", "", "--admin-endpoint", "", "--connect", f"tcp://127.0.0.1:{free_port()}",
                        "--curve-broker-key", "-" + "a" * 38], capture_output=True, text=True, timeout=20)
    out = p.stdout + p.stderr
    assert "Missing value" not in out, out
    assert p.returncode != 0 and "--curve-broker-key needs --curve-secret-key-file" in out, (p.returncode, out)


def test_connect_with_curve_but_no_broker_key_refuses_to_start(tmp_path):
    _, sec = (k.decode() for k in zmq.curve_keypair())
    (tmp_path / "k").write_text(sec + "\n")
    (tmp_path / "c").write_text("")
    write_model(tmp_path / "m", "tp")
    t0 = time.monotonic()
    p = subprocess.Popen([str(COALESCED), "serve", "--models", str(tmp_path / "m"), "--plugins", str(PLUGINS),
                          "--endpoint", "", "--admin-endpoint", "", "--connect", f"tcp://127.0.0.1:{free_port()}",
                          "--curve-secret-key-file", str(tmp_path / "k"), "--curve-clients", str(tmp_path / "c")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = p.communicate(timeout=20)
    took = time.monotonic() - t0
    assert p.returncode == 1 and "--curve-broker-key" in out, (p.returncode, out)
    # Refused before anything started: no worker, no worker socket directory, no model.
    assert "worker" not in out and "model" not in out, out
    assert not list(Path("/tmp").glob(f"coalesced-workers-{p.pid}-*"))
    assert took < 5, took
