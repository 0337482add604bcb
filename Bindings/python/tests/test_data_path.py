"""Training on a user's own images, end to end, as a new user would (the data path).

A small folder of coloured shapes (40x40 RGB PNGs with captions.jsonl) and one of gray images in
labelled subfolders are made here; the real `coalesce` CLI trains a shared autoencoder and a
coalescer on them (20 optimiser steps each: the pixels only have to agree between faces, not look
good), then the same requests go through the CLI, the daemon (raw replies) and libcoalesce with
the coalescer plugin, and must give identical pixels. Bad folders must fail with a message naming
the file (and line).

Needs COALESCE_CLI and COALESCED (`make test-python` sets them) and the plugin directory of the
everyday build (the CLI's directory); the library from $COALESCE_PREFIX like test_binding.py.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import coalesce

CLI = os.environ.get("COALESCE_CLI")
COALESCED = os.environ.get("COALESCED")
pytestmark = pytest.mark.skipif(not CLI or not Path(CLI).exists() or not COALESCED,
                                reason="needs COALESCE_CLI and COALESCED (`make test-python` sets them)")
PLUGINS = str(Path(CLI).parent) if CLI else ""

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230)}
SHAPES = ("circle", "square")


def _shape(kind: str, colour: tuple[int, int, int], rng: np.random.Generator, side: int = 40) -> np.ndarray:
    img = np.zeros((side, side, 3), np.uint8)
    cy, cx = rng.integers(14, 26, size=2)
    r = rng.integers(7, 12)
    y, x = np.mgrid[0:side, 0:side]
    mask = (y - cy) ** 2 + (x - cx) ** 2 <= r * r if kind == "circle" else (abs(y - cy) <= r) & (abs(x - cx) <= r)
    img[mask] = colour
    return img


def make_shapes_folder(root: Path, per_kind: int = 6) -> Path:
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    lines = []
    for colour, rgb in COLOURS.items():
        for kind in SHAPES:
            for i in range(per_kind):
                name = f"{colour}-{kind}-{i}.png"
                coalesce.save_png(_shape(kind, rgb, rng), root / name)
                lines.append(json.dumps({"file": name, "caption": f"a {colour} {kind}"}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root


def make_gray_folder(root: Path, per_class: int = 12) -> Path:
    rng = np.random.default_rng(8)
    for label, lo, hi in (("bright", 150, 255), ("dark", 0, 90)):
        d = root / label
        d.mkdir(parents=True)
        for i in range(per_class):
            coalesce.save_png(rng.integers(lo, hi, size=(28, 28), dtype=np.uint8), d / f"{i:03d}.png")
    return root


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True)
    if ok and proc.returncode != 0:
        pytest.fail(f"coalesce {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def train_pair(data: Path, models: Path, name: str, *size: str) -> Path:
    cli("train", "autoencoder", "--data", str(data), *size, "--max-steps", "20", "--channels", "8,8,8",
        "--decoder-channels", "8,8,8", "--latent-channels", "2", "--out", str(models / "autoencoder"))
    cli("train", "coalescer", "--data", str(data), *size, "--autoencoder", str(models / "autoencoder"),
        "--max-steps", "20", "--hidden", "32", "--blocks", "1", "--level-input", "--renoise", "0.5",
        "--probe-per-class", "0", "--out", str(models / name))
    return models / name


def cli_images(models: Path, name: str, prompt: str, seed: int, steps: int, count: int, out: Path) -> np.ndarray:
    cli("generate", "--models-dir", str(models), "--model", name, "--prompt", prompt, "--seed", str(seed),
        "--steps", str(steps), "--count", str(count), "--out", str(out))
    return np.stack([coalesce.read_png(out / f"{i:05d}.png") for i in range(count)])


class Daemon:
    def __init__(self, models: Path, tmp: Path):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        s.close()
        self.log = open(tmp / "coalesced.log", "w+")
        self.proc = subprocess.Popen([COALESCED, "--models", str(models), "--plugins", PLUGINS, "--endpoint",
                                      self.endpoint, "--admin-endpoint", f"ipc://{tmp}/admin.ipc"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def client(self):
        client_mod = pytest.importorskip("coalesce_client")
        c = client_mod.Client(self.endpoint, timeout=20)
        deadline = time.monotonic() + 30
        while True:
            try:
                if c.health().live:
                    return c
            except client_mod.CoalesceError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, "coalesced did not start"
            time.sleep(0.1)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.seek(0)
        print(self.log.read())


def check_faces_agree(models: Path, name: str, requests, tmp: Path, shape: tuple[int, ...]):
    daemon = Daemon(models, tmp)
    try:
        with daemon.client() as c, coalesce.Engine(plugin_dir=PLUGINS) as eng:
            eng.load_model(name, models / name)
            for k, (prompt, seed, steps, count) in enumerate(requests):
                via_cli = cli_images(models, name, prompt, seed, steps, count, tmp / f"cli-{k}")
                assert via_cli.shape == (count, *shape)
                via_daemon = c.generate(name, prompt=prompt, seed=seed, steps=steps, count=count, format="raw").array()
                via_lib = eng.generate(name, prompt=prompt, seed=seed, steps=steps, count=count)
                np.testing.assert_array_equal(via_daemon, via_cli)
                np.testing.assert_array_equal(via_lib, via_cli)
    finally:
        daemon.stop()


def test_rgb_folder_with_captions_trains_and_serves_identically(tmp_path):
    data = make_shapes_folder(tmp_path / "shapes-data")
    models = tmp_path / "M"
    model = train_pair(data, models, "shapes", "--size", "32")
    ae = json.loads((models / "autoencoder" / "autoencoder.json").read_text())
    assert (ae["image_size"], ae["image_channels"]) == (32, 3)
    out = tmp_path / "OUT"
    imgs = cli_images(models, "shapes", "a red circle", 1, 2, 2, out)
    assert imgs.shape == (2, 32, 32, 3) and imgs.dtype == np.uint8
    assert (model / "samples.png").exists() and (model / "training-report.txt").exists()
    with coalesce.Engine(plugin_dir=PLUGINS) as eng:
        eng.load_model("shapes", model)
        info = eng.describe("shapes")
        assert (info["height"], info["width"], info["channels"]) == (32, 32, 3)
        assert sorted(info["classes"]) == sorted(f"a {c} {s}" for c in COLOURS for s in SHAPES)
    check_faces_agree(models, "shapes", [("a red circle", 1, 2, 2), ("a blue square", 99, 1, 3), ("", 5, 2, 1)],
                      tmp_path, (32, 32, 3))


def test_gray_folder_with_subfolder_labels(tmp_path):
    data = make_gray_folder(tmp_path / "gray-data")
    models = tmp_path / "M"
    train_pair(data, models, "tones")
    with coalesce.Engine(plugin_dir=PLUGINS) as eng:
        eng.load_model("tones", models / "tones")
        info = eng.describe("tones")
        assert (info["height"], info["width"], info["channels"]) == (28, 28, 1)
        assert info["classes"] == ["bright", "dark"]
    check_faces_agree(models, "tones", [("bright", 3, 2, 2), ("dark", 4, 1, 2)], tmp_path, (28, 28))


def make_labelled_rgb_folder(root: Path, per_class: int = 20) -> Path:
    """Coloured shapes in one subfolder per class (red-circle, ..., blue-square), 28x28 RGB."""
    rng = np.random.default_rng(9)
    for colour, rgb in COLOURS.items():
        for kind in SHAPES:
            d = root / f"{colour}-{kind}"
            d.mkdir(parents=True)
            for i in range(per_class):
                coalesce.save_png(_shape(kind, rgb, rng, side=28), d / f"{i:03d}.png")
    return root


def test_classifier_on_an_rgb_folder_scores_a_model_trained_on_it(tmp_path):
    """`coalesce train classifier --data DIR` and `coalesce eval --data DIR --classifier CLF`: the
    evaluation on a user's own labelled folder, as the README shows it."""
    data = make_labelled_rgb_folder(tmp_path / "labelled")
    clf = tmp_path / "clf"
    cli("train", "classifier", "--data", str(data), "--epochs", "12", "--batch-size", "16", "--channels", "8,16",
        "--strides", "2,2", "--feature-dim", "32", "--out", str(clf))
    cfg = json.loads((clf / "classifier.json").read_text())
    assert (cfg["image_size"], cfg["image_channels"], cfg["classes"]) == (28, 3, 6)
    models = tmp_path / "M"
    train_pair(data, models, "shapes")
    proc = cli("eval", "--data", str(data), "--classifier", str(clf), "--models-dir", str(models), "--model", "shapes",
               "--steps", "2", "--count", "60", "--batch", "16", "--json", "--save-images", str(tmp_path / "scored"))
    report = json.loads(proc.stdout)
    gen, real = report["generated"], report["reference_train"]
    assert gen["count"] == 60 and real["count"] == 60
    # Six prompts, one per class, from the folder's captions; 10 images each.
    labels = [int(l.split("\t")[1]) for l in (tmp_path / "scored" / "labels.txt").read_text().splitlines()]
    assert sorted(set(labels)) == list(range(6)) and all(labels.count(c) == 10 for c in range(6))
    assert coalesce.read_png(tmp_path / "scored" / "00000.png").shape == (28, 28, 3)
    # A model trained for 20 steps is far from its own training images, in both distances.
    assert real["fid"] < gen["fid"]
    assert real["kid"]["value"] < gen["kid"]["value"]
    assert real["class_accuracy"] > 0.5
    # Unlabelled images cannot be scored: a clear error, not a crash.
    bad = cli("eval", "--data", str(make_shapes_folder(tmp_path / "unlabelled")), "--classifier", str(clf),
              "--models-dir", str(models), "--model", "shapes", ok=False)
    assert bad.returncode != 0 and "class" in (bad.stderr + bad.stdout)


def test_latent_diffusion_keeps_checkpoints_and_records_its_time(tmp_path):
    """`coalesce train latent-diffusion --keep-checkpoints-every N` keeps the points of a quality
    against training time curve, and training.json records wall and CPU time and steps per second;
    a kept checkpoint turns into a servable model by resuming at its own step."""
    data = make_gray_folder(tmp_path / "gray-data")
    models = tmp_path / "M"
    cli("train", "autoencoder", "--data", str(data), "--max-steps", "20", "--channels", "8,8,8",
        "--decoder-channels", "8,8,8", "--latent-channels", "2", "--out", str(models / "autoencoder"))
    out = models / "ld"
    cli("train", "latent-diffusion", "--data", str(data), "--autoencoder", str(models / "autoencoder"), "--steps", "4",
        "--batch-size", "8", "--channels", "8,16", "--sample-every", "0", "--keep-checkpoints-every", "2", "--out", str(out))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["2", "4"]
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 4 and record["cpu_seconds"] >= 0 and record["steps_per_second"] > 0
    early = models / "ld-2"
    early.mkdir()
    (early / "checkpoint.safetensors").write_bytes((out / "checkpoints" / "2" / "checkpoint.safetensors").read_bytes())
    cli("train", "latent-diffusion", "--data", str(data), "--autoencoder", str(models / "autoencoder"), "--steps", "2",
        "--batch-size", "8", "--channels", "8,16", "--sample-every", "0", "--out", str(early))
    assert json.loads((early / "training.json").read_text())["steps"] == 2
    # The kept step-2 checkpoint is another model than the step-4 one (EMA weights of step 2), and
    # both serve. (Their images may agree: a few steps barely move the zero-initialised output.)
    assert (out / "latent-diffusion.safetensors").read_bytes() != (early / "latent-diffusion.safetensors").read_bytes()
    a = cli_images(models, "ld", "bright", 3, 2, 2, tmp_path / "a")
    b = cli_images(models, "ld-2", "bright", 3, 2, 2, tmp_path / "b")
    assert a.shape == b.shape == (2, 28, 28)


def _fails(data: Path, *extra: str) -> str:
    proc = cli("train", "autoencoder", "--data", str(data), "--max-steps", "1", "--out", str(data.parent / "ae-out"),
               *extra, ok=False)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr + proc.stdout


def test_bad_folders_give_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "contains no PNG images" in _fails(empty)

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    coalesce.save_png(np.zeros((28, 28), np.uint8), mixed / "a.png")
    coalesce.save_png(np.zeros((32, 32), np.uint8), mixed / "b.png")
    msg = _fails(mixed)
    assert "b.png" in msg and "--size" in msg

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    coalesce.save_png(np.zeros((28, 28), np.uint8), corrupt / "a.png")
    (corrupt / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    assert "broken.png" in _fails(corrupt)

    captions = tmp_path / "captions"
    captions.mkdir()
    coalesce.save_png(np.zeros((28, 28), np.uint8), captions / "a.png")
    (captions / "captions.jsonl").write_text('{"file": "a.png", "caption": "ok"}\n{not json\n')
    msg = _fails(captions)
    assert "captions.jsonl:2" in msg

    odd = tmp_path / "odd"
    odd.mkdir()
    coalesce.save_png(np.zeros((30, 30), np.uint8), odd / "a.png")
    assert "--size" in _fails(odd)
    assert "multiple of 4" in _fails(odd, "--size", "30")
