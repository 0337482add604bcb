"""The asyncio client (coalesce_client.aio) against a REAL coalesced process: the same methods,
results and errors as the blocking client, many calls in flight on one event loop."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_daemon import daemon, daemon_factory, pytestmark  # noqa: E402,F401  (fixtures and skip rule)

from coalesce_client import CoalesceError, ErrorCode, Health, Metrics, ModelList  # noqa: E402
from coalesce_client import aio  # noqa: E402


def test_16_concurrent_requests_on_one_event_loop(daemon_factory):
    d = daemon_factory("--workers", "2", "--max-batch", "4", models={"slow": {"step_delay_ms": 20}})

    async def main():
        async with aio.Client(d.endpoint, timeout=30) as c:
            seen: dict = {}
            results = await asyncio.gather(*(
                c.generate("slow", prompt="a sandal", seed=s, steps=3,
                           on_progress=lambda step, total, s=s: seen.setdefault(s, []).append(step))
                for s in range(16)))
            return results, seen

    loop_started = asyncio.new_event_loop()
    try:
        results, seen = loop_started.run_until_complete(main())
    finally:
        loop_started.close()
    assert len(results) == 16
    assert all(seen[s] == [1, 2, 3] for s in range(16))
    assert max(r.batch_requests for r in results) > 1, "the 16 requests were never in the daemon together"
    with d.client() as sync:  # the same pixels as the blocking client, request by request
        for s, r in enumerate(results):
            assert r.images == sync.generate("slow", prompt="a sandal", seed=s, steps=3).images


def test_same_methods_results_and_errors_as_the_blocking_client(daemon):
    async def main():
        async with aio.Client(daemon.endpoint, timeout=10) as c:
            models = await c.list_models()
            health = await c.health()
            r = await c.generate("tp", seed=5, count=2, format="png")
            with pytest.raises(CoalesceError) as bad:
                await c.generate("tp", count=0, steps=100000)
            with pytest.raises(CoalesceError) as missing:
                await c.generate("no-such-model")
            with pytest.raises(CoalesceError) as not_admin:
                await c.load_model("tp")
            metrics = await c.metrics()
            return models, health, r, bad.value, missing.value, not_admin.value, metrics

    models, health, r, bad, missing, not_admin, metrics = asyncio.run(main())
    assert isinstance(models, ModelList) and [m.name for m in models.loaded] == ["tp"]
    assert isinstance(health, Health) and health.ready and not health.draining
    assert bad.code == ErrorCode.INVALID_ARGUMENT and missing.code == ErrorCode.NOT_FOUND
    assert not_admin.code == ErrorCode.UNAVAILABLE
    assert isinstance(metrics, Metrics) and metrics.outcomes["OK"] == 1
    with daemon.client() as sync:
        want = sync.generate("tp", seed=5, count=2)
    assert np.array_equal(r.array(), want.array())  # PNG reply decoded == raw pixels


def test_timeout_raises_deadline_exceeded():
    async def main():
        async with aio.Client("tcp://127.0.0.1:9", timeout=0.2, retries=1) as c:  # nobody listens
            await c.health()

    with pytest.raises(CoalesceError) as e:
        asyncio.run(main())
    assert e.value.code == ErrorCode.DEADLINE_EXCEEDED and "2 attempt(s)" in e.value.message
