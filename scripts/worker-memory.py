#!/usr/bin/env python3
"""Memory of a model repository served by coalesced with worker processes (--isolation process):
starts the daemon, waits for every model to load, asks each model for one image (prompt "a shirt",
seed 7), then reads /proc/PID/smaps_rollup of every worker and prints RSS, PSS and anonymous memory
per worker, the same per mapped *.safetensors file (from /proc/PID/smaps), and the sums.

PSS (proportional set size) is the honest number for pages shared between processes (a weights
file that several workers map is counted once in all, split between them); RSS counts a shared
page once in every process that maps it. Each model's image digest is printed too (the same
request before and after a change must give the same bytes).

Usage: scripts/worker-memory.py [--coalesced .build/release/coalesced] [--models models] [-- DAEMON ARGS...]
e.g.   scripts/worker-memory.py -- --no-map-weights      (every worker reads its own copy of its weights)
Linux only; needs pyzmq and protobuf (Bindings/python)."""
from __future__ import annotations

import argparse
import hashlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Bindings/python"))
from coalesce_client import Client, CoalesceError  # noqa: E402

KEYS = ("Rss", "Pss", "Anonymous")


def rollup(pid: int) -> dict[str, int]:
    """kB by field of /proc/PID/smaps_rollup."""
    out = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if len(parts) >= 3 and parts[1].isdigit():
            out[parts[0].rstrip(":")] = int(parts[1])
    return out


def mapped_files(pids: list[int]) -> dict[str, dict]:
    """RSS and PSS (kB) of every mapped *.safetensors file, summed over `pids`, and who maps it."""
    files: dict[str, dict] = {}
    for pid in pids:
        current = None
        for line in open(f"/proc/{pid}/smaps"):
            parts = line.split()
            if len(parts) >= 5 and "-" in parts[0] and ":" in parts[3]:  # a mapping's header line
                current = parts[5] if len(parts) >= 6 and parts[5].endswith(".safetensors") else None
            elif current and parts[0] in ("Rss:", "Pss:"):
                f = files.setdefault(current, {"Rss": 0, "Pss": 0, "pids": set()})
                f[parts[0][:-1]] += int(parts[1])
                f["pids"].add(pid)
    return files


def mib(kb: int) -> str:
    return f"{kb / 1024:7.1f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coalesced", default=str(REPO / ".build/release/coalesced"))
    ap.add_argument("--models", default=str(REPO / "models"))
    ap.add_argument("daemon_args", nargs="*", help="more coalesced arguments (after --)")
    a = ap.parse_args()

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    tmp = Path(tempfile.mkdtemp(prefix="worker-memory-"))
    endpoint = f"tcp://127.0.0.1:{port}"
    log = open(tmp / "coalesced.log", "w")
    daemon = subprocess.Popen([a.coalesced, "--models", a.models, "--endpoint", endpoint,
                               "--admin-endpoint", f"ipc://{tmp}/admin.ipc", "--isolation", "process",
                               *a.daemon_args], stdout=log, stderr=subprocess.STDOUT)
    try:
        with Client(endpoint, timeout=300) as c:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if c.health().live:
                        break
                except CoalesceError:
                    pass
                if daemon.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"coalesced did not start; see {tmp}/coalesced.log")
                time.sleep(0.2)
            names = sorted(m.name for m in c.list_models().loaded)
            digests = {}
            for name in names:
                r = c.generate(name, prompt="a shirt", seed=7, count=1)
                digests[name] = hashlib.sha256(r.array().tobytes()).hexdigest()[:16]
        time.sleep(1)
        workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(daemon.pid)], capture_output=True,
                                                  text=True).stdout.split()]
        total = dict.fromkeys(KEYS, 0)
        rows = []
        for pid in workers:
            argv = open(f"/proc/{pid}/cmdline").read().split("\0")
            model = argv[argv.index("--model") + 1] if "--model" in argv else "?"
            r = rollup(pid)
            rows.append((model, pid, r))
            for k in KEYS:
                total[k] += r.get(k, 0)
        print(f"{len(names)} models loaded: {' '.join(names)}")
        for model, pid, r in sorted(rows):
            print(f"  {model:22s} pid {pid:7d}  RSS {mib(r['Rss'])}  PSS {mib(r['Pss'])}  anonymous {mib(r['Anonymous'])}")
        for path, f in sorted(mapped_files(workers).items()):
            print(f"  mapped {path}: {len(f['pids'])} worker(s), RSS {mib(f['Rss'])}, PSS {mib(f['Pss'])}")
        d = rollup(daemon.pid)
        print(f"sum of {len(workers)} workers: RSS {mib(total['Rss'])}  PSS {mib(total['Pss'])}  "
              f"anonymous {mib(total['Anonymous'])}")
        print(f"daemon: RSS {mib(d['Rss'])}  PSS {mib(d['Pss'])}")
        print("image digests:", " ".join(f"{n}={h}" for n, h in digests.items()))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)


if __name__ == "__main__":
    main()
