#!/usr/bin/env python3
"""Hashes of every bundled backend's images through libcoalesce, to show that a change to the
request path (batching, limits, buffers) leaves every image the same bytes.

    python3 scripts/image-hashes.py --build .build/release > after.txt
    python3 scripts/image-hashes.py --build /tmp/base --compare after.txt   # base build, same models

Each line is `model steps seed count sha256` of the raw pixels of one engine call. Counts 3 and
300 (more than one model call of a Swift plugin, 256 images) for the fast models; one request of
3 images for the slow ones. With --compare, exits 1 and names the lines that differ.
"""
import argparse
import hashlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Bindings" / "python"))

# (model, steps, counts): few steps keep it quick; every backend's whole network runs at each step.
CASES = [("test-pattern", 2, (3, 300)), ("coalescer", 2, (3, 300)), ("coalescer", 1, (3,)),
         ("coalescer-v3", 1, (3, 300)), ("coalescer-v1", 2, (3,)), ("coalescer-v2", 2, (3,)),
         ("coalescer-v1-minilm", 2, (3,)), ("coalescer-v2-minilm", 2, (3,)),
         ("latent-diffusion", 3, (3,)), ("latent-diffusion-minilm", 2, (3,)),
         ("distilled-unet", 2, (3, 300)), ("distilled-unet-2step", 2, (3,)), ("distilled-unet-minilm", 2, (3,)),
         ("nested-unet", 3, (3,)), ("pixel-unet", 3, (3,))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(REPO / ".build" / "release"),
                    help="directory with libCoalesceLib.so and the backend plugins")
    ap.add_argument("--models-dir", default=str(REPO / "models"))
    ap.add_argument("--compare", help="a file this script wrote; report the lines that differ")
    args = ap.parse_args()
    import coalesce
    lines = []
    with coalesce.Engine(plugin_dir=args.build, models_dir=args.models_dir,
                         library=os.path.join(args.build, "libCoalesceLib.so"), preload=True) as engine:
        for model, steps, counts in CASES:
            if not (Path(args.models_dir) / model / "config.json").exists():
                print(f"# {model}: not in {args.models_dir}, skipped", file=sys.stderr)
                continue
            for count in counts:
                batch = engine.generate(model, prompt="a sneaker", seed=5, steps=steps, count=count)
                digest = hashlib.sha256(batch.tobytes()).hexdigest()
                lines.append(f"{model} {steps} 5 {count} {digest}")
                print(lines[-1], flush=True)
    if args.compare:
        want = [l.strip() for l in Path(args.compare).read_text().splitlines() if l.strip() and not l.startswith("#")]
        differ = sorted(set(want) ^ set(lines))
        if differ:
            print("differ:\n  " + "\n  ".join(differ), file=sys.stderr)
            return 1
        print(f"# all {len(lines)} calls give the same bytes as {args.compare}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
