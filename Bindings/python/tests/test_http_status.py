"""coalesced --http: /metrics (Prometheus text format, read with the official Python client's
parser), /healthz and /readyz, against a REAL daemon under load."""
from __future__ import annotations

import http.client
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_daemon import Daemon, daemon, daemon_factory, make_generate, pytestmark  # noqa: E402,F401

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from coalesce_client import CoalesceError  # noqa: E402


def http_address(d: Daemon) -> str:
    deadline = time.monotonic() + 10
    while "http status server listening" not in d.logs():
        assert time.monotonic() < deadline, d.logs()
        time.sleep(0.05)
    line = next(x for x in d.logs().splitlines() if "http status server listening" in x)
    return next(w for w in line.split() if w.startswith("http="))[len("http="):]


def get(address: str, path: str, method: str = "GET") -> tuple[int, dict, str]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        conn.close()


def scrape(address: str) -> dict:
    """{(name, sorted label items): value} of every sample."""
    status, headers, body = get(address, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body) for s in fam.samples}


def test_off_by_default(daemon):
    assert "http status server" not in daemon.logs()


def test_metrics_under_load_match_the_protobuf_metrics(daemon_factory):
    d = daemon_factory("--http", "127.0.0.1:0", "--workers", "2", "--max-batch", "4",
                       models={"tp": {}, "slow": {"step_delay_ms": 5}})
    address = http_address(d)
    assert address.startswith("127.0.0.1:")
    stop = threading.Event()
    errors: list = []

    def load(k: int) -> None:
        with d.client() as c:
            i = 0
            while not stop.is_set():
                try:
                    c.generate("slow" if i % 2 else "tp", seed=k * 1000 + i, count=1 + i % 3)
                    if i % 7 == 0:
                        c.generate("tp", count=0, steps=100000)  # INVALID_ARGUMENT, counted for tp
                except CoalesceError:
                    pass
                except Exception as e:  # noqa: BLE001
                    errors.append(e)
                i += 1

    threads = [threading.Thread(target=load, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    try:
        previous = 0.0
        for _ in range(10):  # scrapes under load: well formed, counters only grow
            samples = scrape(address)
            total = sum(v for (n, _), v in samples.items() if n == "coalesced_requests_total")
            assert total >= previous
            previous = total
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors and previous > 0

    with d.client() as c:  # quiet now: the two views agree exactly
        m = c.metrics()
    samples = scrape(address)
    for o in m.requests_by_outcome:
        assert samples[("coalesced_requests_total", (("outcome", o.outcome.name),))] == o.count
    for p in m.per_model:
        assert samples[("coalesced_model_requests_total", (("model", p.model),))] == p.requests
        assert samples[("coalesced_model_images_total", (("model", p.model),))] == p.images
        assert samples.get(("coalesced_model_errors_total", (("model", p.model),)), 0) == p.errors
    assert {p.model for p in m.per_model} == {"tp", "slow"}
    assert samples[("coalesced_generate_duration_seconds_count", ())] == m.latency_count
    assert samples[("coalesced_generate_duration_seconds_sum", ())] == pytest.approx(m.latency_sum_ms / 1000, rel=1e-9)
    for b in m.latency:
        le = "+Inf" if b.le_ms == float("inf") else repr(b.le_ms / 1000)
        got = [v for (n, labels), v in samples.items()
               if n == "coalesced_generate_duration_seconds_bucket" and float(dict(labels)["le"]) == float(le)]
        assert got == [b.count], (le, got)
    assert samples[("coalesced_batches_total", ())] == m.batches
    assert samples[("coalesced_batched_requests_total", ())] == m.batched_requests
    assert samples[("coalesced_malformed_messages_total", ())] == m.malformed
    assert samples[("coalesced_queue_capacity", ())] == m.queue_capacity
    assert samples[("coalesced_models_loaded", ())] == 2 and samples[("coalesced_ready", ())] == 1


def test_probes_and_readyz_flips_while_draining(daemon_factory):
    d = daemon_factory("--http", "0", "--workers", "1", "--max-batch", "1",
                       models={"slow": {"step_delay_ms": 100}})
    address = http_address(d)
    assert get(address, "/healthz")[:3:2] == (200, "ok\n")
    assert get(address, "/readyz")[:3:2] == (200, "ready\n")
    assert get(address, "/metrics?x=1")[0] == 200
    assert get(address, "/nothing")[0] == 404
    status, headers, _ = get(address, "/metrics", method="POST")  # read-only
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert get(address, "/readyz", method="HEAD")[:3:2] == (200, "")
    with d.client() as c:
        running = c.send(make_generate("slow", steps=10))  # about a second of work keeps it draining
        time.sleep(0.1)
        d.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while True:
            status, _, body = get(address, "/readyz")
            if status == 503:
                break
            assert time.monotonic() < deadline, "readyz never said not ready"
            time.sleep(0.02)
        assert body == "not ready: draining\n"
        assert get(address, "/healthz")[0] == 200  # still live while it drains
        assert scrape(address)[("coalesced_draining", ())] == 1
        r = c.recv(10)
        while r is not None and r.WhichOneof("kind") == "progress":
            r = c.recv(10)
        assert r is not None and r.id == running and r.WhichOneof("kind") == "images"
    assert d.proc.wait(10) == 0


@pytest.mark.parametrize("address", ["localhost:99999", "not-an-address:x", "[::1:9464"])
def test_bad_http_address_refuses_to_start(tmp_path, address):
    with pytest.raises(RuntimeError, match="--http"):
        Daemon(tmp_path, "--http", address)


def test_systemd_readiness_notification(tmp_path):
    """A Type=notify unit hears READY=1 once the daemon serves, and STOPPING=1 on SIGTERM."""
    import socket
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(10)
    try:
        d = Daemon(tmp_path, env={"NOTIFY_SOCKET": str(path)})
        assert s.recv(256) == b"READY=1"
        assert d.stop() == 0
        assert s.recv(256) == b"STOPPING=1"
    finally:
        s.close()
