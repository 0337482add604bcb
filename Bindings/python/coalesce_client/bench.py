"""Round-trip latency and throughput of a running coalesced, from N concurrent client processes.

    python3 -m coalesce_client.bench --endpoint tcp://127.0.0.1:5555 --model test-pattern \
        --clients 1 16 --seconds 5

Each client is its own process (no GIL sharing) with one DEALER socket and one request in flight
at a time (closed loop): latency is send-to-final-reply as the client sees it. Prints one line
per client count: requests, throughput, latency p50/p90/p99/max, and the mean number of requests
that shared a backend call (from the replies).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Any, Dict, List


def _client(endpoint: str, model: str, steps: int, count: int, seconds: float, warmup: float, seed0: int,
            out: Any) -> None:
    from coalesce_client import Client
    lat: List[float] = []
    batch: List[int] = []
    with Client(endpoint, timeout=30) as c:
        end_warm = time.monotonic() + warmup
        while time.monotonic() < end_warm:
            c.generate(model, seed=seed0, steps=steps, count=count)
        t_end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < t_end:
            t0 = time.perf_counter()
            r = c.generate(model, prompt="a shirt", seed=seed0 + i, steps=steps, count=count)
            lat.append((time.perf_counter() - t0) * 1000)
            batch.append(r.batch_requests)
            i += 1
    out.put((lat, batch))


def run(endpoint: str, model: str, clients: int, seconds: float, warmup: float = 0.5, steps: int = 0,
        count: int = 1) -> Dict[str, Any]:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(endpoint, model, steps, count, seconds, warmup, k * 1_000_000, q))
             for k in range(clients)]
    for p in procs:
        p.start()
    lat: List[float] = []
    batch: List[int] = []
    for _ in procs:
        l, b = q.get()
        lat += l
        batch += b
    for p in procs:
        p.join()
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))]

    return dict(clients=clients, requests=len(lat), rps=len(lat) / seconds, p50=pct(50), p90=pct(90), p99=pct(99),
                max=lat[-1], mean_batch=sum(batch) / max(len(batch), 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    ap.add_argument("--model", default="test-pattern")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--count", type=int, default=1)
    a = ap.parse_args()
    print(f"# {a.endpoint} model={a.model} steps={a.steps} count={a.count} seconds={a.seconds}")
    print("clients  requests   req/s    p50_ms   p90_ms   p99_ms   max_ms  mean_batch")
    for n in a.clients:
        r = run(a.endpoint, a.model, n, a.seconds, a.warmup, a.steps, a.count)
        print(f"{r['clients']:7d} {r['requests']:9d} {r['rps']:8.0f} {r['p50']:9.3f} {r['p90']:8.3f} {r['p99']:8.3f} "
              f"{r['max']:8.2f} {r['mean_batch']:10.2f}")


if __name__ == "__main__":
    main()
