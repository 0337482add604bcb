#!/usr/bin/env python3
"""Gathers one `make bench-peers` run (scripts/peers/bench-peers.sh) into a JSON file and a
Markdown table: per case, the time per call of Coalesce, PyTorch eager and ONNX Runtime (every
timed call of every round pooled: median and minimum), the ratio Coalesce / peer of the
medians, and GFLOP/s beside the machine's sgemm peak measured in the same run.

  report.py RUN_DIR OUT_JSON

RUN_DIR holds, written by bench-peers.sh: cases.txt (one "model batch mode" a line),
<case>.<runtime>.<round>.json (runtime coalesce, torch or ort), check-<model>.json,
sgemm-coalesce.txt, sgemm-torch.json and env.json.
"""
import glob
import json
import os
import statistics
import sys

RUNTIMES = [("coalesce", "Coalesce"), ("torch", "PyTorch"), ("ort", "ONNX Runtime")]


def case_name(model, batch, mode):
    return f"{model}-b{batch}-{mode}"


def load(path):
    with open(path) as f:
        return json.load(f)


def pooled(run_dir, name, runtime):
    """Every round's result of one runtime on one case, pooled; None if it was not run."""
    rounds = [load(p) for p in sorted(glob.glob(os.path.join(run_dir, f"{name}.{runtime}.*.json")))]
    if not rounds:
        return None
    times = [t for r in rounds for t in r["times_ms"]]
    return {
        "ms_median": statistics.median(times), "ms_min": min(times), "calls": len(times),
        "round_medians_ms": [statistics.median(r["times_ms"]) for r in rounds],
        "threads": rounds[0]["threads"], "params": rounds[0].get("params"),
        **({"gflop": rounds[0]["gflop"], "kernels": rounds[0].get("kernels")} if runtime == "coalesce" else {}),
    }


def sgemm_peaks(run_dir):
    peaks = {}
    p = os.path.join(run_dir, "sgemm-coalesce.txt")
    if os.path.exists(p):
        for line in open(p):
            if line.startswith("sgemm "):
                peaks["coalesce_openblas"] = float(line.split(":")[1].split()[0])
    p = os.path.join(run_dir, "sgemm-torch.json")
    if os.path.exists(p):
        peaks["torch"] = load(p)["gflops"]
    return peaks


def fma_peak(run_dir):
    """The arithmetic ceiling: `coalesce bench ops` runs fused multiply-adds on registers on every
    thread at once (None where the run predates it)."""
    p = os.path.join(run_dir, "sgemm-coalesce.txt")
    if os.path.exists(p):
        for line in open(p):
            if line.startswith("FMA peak"):
                return float(line.split(":")[1].split()[0])
    return None


def main():
    run_dir, out = sys.argv[1], sys.argv[2]
    env = load(os.path.join(run_dir, "env.json"))
    peaks = sgemm_peaks(run_dir)
    peak = max(peaks.values()) if peaks else None
    fma = fma_peak(run_dir)
    checks = {os.path.basename(p)[len("check-"):-len(".json")]: load(p)
              for p in sorted(glob.glob(os.path.join(run_dir, "check-*.json")))}
    cases = []
    for line in open(os.path.join(run_dir, "cases.txt")):
        if not line.strip():
            continue
        model, batch, mode = line.split()
        name = case_name(model, batch, mode)
        row = {"model": model, "batch": int(batch), "mode": mode}
        for key, _ in RUNTIMES:
            row[key] = pooled(run_dir, name, key)
        c = row["coalesce"]
        if c:
            row["gflop"] = c["gflop"]
            for key, _ in RUNTIMES:
                r = row[key]
                if r:
                    r["gflops"] = c["gflop"] / (r["ms_median"] / 1e3)
                    if peak:
                        r["percent_of_sgemm_peak"] = 100 * r["gflops"] / peak
                    if fma:
                        r["percent_of_fma_peak"] = 100 * r["gflops"] / fma
            for key in ("torch", "ort"):
                if row[key]:
                    row[f"ratio_coalesce_over_{key}"] = c["ms_median"] / row[key]["ms_median"]
        cases.append(row)
    env["kernels"] = next((r["coalesce"]["kernels"] for r in cases if r["coalesce"]), None)
    result = {**env, "sgemm_peak_gflops": peaks, "fma_peak_gflops": fma, "checks": checks, "cases": cases}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    def ms(r):
        return f"{r['ms_median']:.2f} ({r['ms_min']:.2f})" if r else "–"

    def ratio(row, key):
        v = row.get(f"ratio_coalesce_over_{key}")
        return f"{v:.2f}" if v is not None else "–"

    def gf(r):
        return f"{r['gflops']:.1f}" if r and "gflops" in r else "–"

    print(f"{env['cpu']}, {env['threads']} threads each; {env['rounds']} alternating rounds of "
          f"{env['seconds_per_round']:g} s per runtime and case; torch {env.get('torch', '?')}, "
          f"onnxruntime {env.get('onnxruntime', '?')}, Coalesce kernels {env.get('kernels', '?')}.")
    if peaks:
        parts = [f"{v:.1f} GFLOP/s ({'OpenBLAS through Coalesce' if k == 'coalesce_openblas' else 'torch.mm'})"
                 for k, v in peaks.items()]
        print(f"sgemm 1024x1024x1024 at {env['threads']} threads: " + ", ".join(parts) + ".")
    if fma:
        print(f"FMA peak at {env['threads']} threads (fused multiply-adds on registers, `coalesce bench ops`): "
              f"{fma:.1f} GFLOP/s; the % columns are of it.")
    agree = [f"{m} {max(v for k, v in c.items() if k.endswith('_relative')):.1g}" for m, c in checks.items()]
    if agree:
        print("Same function first: largest |difference| / largest |output| against Coalesce's output at batch 2, "
              "PyTorch and ONNX Runtime: " + ", ".join(agree) + ".")
    print()
    print("| network | batch | mode | GFLOP per call | Coalesce ms | PyTorch ms | ONNX Runtime ms "
          "| Coalesce / PyTorch | Coalesce / ONNX Runtime | GFLOP/s Coalesce | GFLOP/s PyTorch | GFLOP/s ONNX Runtime "
          "| % of FMA peak: Coalesce / PyTorch / ONNX Runtime |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def pct(r):
        return f"{r['percent_of_fma_peak']:.0f}%" if r and "percent_of_fma_peak" in r else "–"
    for row in cases:
        c = row["coalesce"]
        print(f"| {row['model']} | {row['batch']} | {row['mode']} | {row.get('gflop', float('nan')):.2f} "
              f"| {ms(c)} | {ms(row['torch'])} | {ms(row['ort'])} | {ratio(row, 'torch')} | {ratio(row, 'ort')} "
              f"| {gf(c)} | {gf(row['torch'])} | {gf(row['ort'])} | {pct(c)} / {pct(row['torch'])} / {pct(row['ort'])} |")
    print()
    print("ms: median per call over every timed call of every round (minimum in brackets). "
          "Ratios are of the medians: below 1, Coalesce is faster. GFLOP per call: convolutions, linear layers "
          "and attention products counted from the layer shapes (x2 for FLOPs; a training step counts 3x the forward).")
    print(f"(written to {out})", file=sys.stderr)


if __name__ == "__main__":
    main()
