"""The diffusion backends (the latent-diffusion teacher, the distilled-unet student, the
nested-unet pixel model) through every face: the same request gives the same pixels from the CLI
(in process), the daemon (ZeroMQ, worker process) and libcoalesce (Python binding); bad requests
get INVALID_ARGUMENT with a message in each.

Runs on the committed models (models/latent-diffusion, models/distilled-unet, models/nested-unet;
a model that is not there is skipped) with the plugins of the everyday build (`make test-python`
sets COALESCE_CLI and COALESCED)."""
import json
import math
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import coalesce

REPO = Path(__file__).resolve().parents[3]
CLI = os.environ.get("COALESCE_CLI")
COALESCED = os.environ.get("COALESCED")
MODELS = ["latent-diffusion", "distilled-unet", "nested-unet"]
MODELS_ROOT = Path(os.environ.get("COALESCE_DIFFUSION_MODELS", REPO / "models"))

pytestmark = pytest.mark.skipif(not CLI or not COALESCED, reason="needs COALESCE_CLI and COALESCED (`make test-python`)")


def plugin_dir() -> Path:
    return Path(CLI).parent


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A models directory with links to the committed diffusion models."""
    r = tmp_path_factory.mktemp("models")
    for m in MODELS:
        src = MODELS_ROOT / m
        if (src / "config.json").exists():
            (r / m).symlink_to(src)
    if not any((r / m).exists() for m in MODELS):
        pytest.skip(f"no trained diffusion model under {MODELS_ROOT}")
    return r


def need(repo, *models):
    for m in models:
        if not (repo / m).exists():
            pytest.skip(f"{MODELS_ROOT / m} is not a trained model")


@pytest.fixture(scope="module")
def daemon(repo, tmp_path_factory):
    from coalesce_client import Client, CoalesceError
    tmp = tmp_path_factory.mktemp("daemon")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    endpoint = f"tcp://127.0.0.1:{port}"
    log = open(tmp / "coalesced.log", "w+")
    proc = subprocess.Popen([COALESCED, "--models", str(repo), "--plugins", str(plugin_dir()), "--endpoint", endpoint,
                             "--admin-endpoint", f"ipc://{tmp}/admin.ipc"], stdout=log, stderr=subprocess.STDOUT)
    client = Client(endpoint, timeout=60)
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.health().ready:
                break
        except CoalesceError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "coalesced did not start"
        time.sleep(0.2)
    yield client
    client.close()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def engine(repo):
    with coalesce.Engine(plugin_dir=str(plugin_dir())) as eng:
        for m in MODELS:
            if (repo / m).exists():
                eng.load_model(m, repo / m)
        yield eng


def cli_generate(repo, tmp_path, model, prompt, seed, steps, count, guidance):
    out = tmp_path / f"cli-{model}-{seed}-{steps}"
    subprocess.run([CLI, "generate", "--model", model, "--models-dir", str(repo), "--prompt", prompt, "--seed", str(seed),
                    "--steps", "default" if steps == 0 else str(steps), "--guidance", str(guidance),
                    "--count", str(count), "--out", str(out)], check=True, capture_output=True)
    return np.stack([coalesce.read_png(out / f"{i:05d}.png") for i in range(count)])


@pytest.mark.parametrize("model", MODELS)
def test_same_pixels_from_cli_daemon_and_library(model, repo, engine, daemon, tmp_path):
    need(repo, model)
    cases = [("ankle boot", 42, 4, 3, 0.0), ("", 7, 2, 2, 0.0), ("a pair of trousers", 2**63 + 5, 3, 2, 2.5)]
    if model == "distilled-unet":
        cases.append(("sneaker", 11, 0, 2, 0.0))  # its default: 4 steps
    for prompt, seed, steps, count, guidance in cases:
        lib = engine.generate(model, prompt=prompt, seed=seed, steps=steps, count=count, guidance=guidance)
        remote = daemon.generate(model, prompt=prompt, seed=seed, steps=steps, count=count, guidance=guidance,
                                 format="raw").array()
        cli = cli_generate(repo, tmp_path, model, prompt, seed, steps, count, guidance)
        np.testing.assert_array_equal(remote, lib)
        np.testing.assert_array_equal(cli, lib)
        # Batch independence: the second image alone equals the second of the batch.
        one = engine.generate(model, prompt=prompt, seed=seed + 1, steps=steps, count=1, guidance=guidance)
        np.testing.assert_array_equal(one[0], lib[1])


def test_describe_reports_guidance_and_steps(engine, repo):
    need(repo, "latent-diffusion", "distilled-unet")
    teacher = engine.model_info("latent-diffusion")
    student = engine.model_info("distilled-unet")
    assert teacher.supports_guidance and student.supports_guidance
    assert teacher.default_steps == 50 and student.default_steps == 4
    assert teacher.max_steps == 64
    # cz_model_describe carries the default guidance each model's config.json sets.
    import json
    for m in ("latent-diffusion", "distilled-unet", "nested-unet"):
        if (repo / m).exists():
            want = json.loads((repo / m / "config.json").read_text()).get("default_guidance")
            assert engine.describe(m).get("default_guidance") == want, m


def test_nested_unet_describe(engine, repo):
    need(repo, "nested-unet")
    info = engine.model_info("nested-unet")
    assert info.supports_guidance and info.default_steps == 50 and info.max_steps == 64
    assert (info.width, info.height, info.channels) == (28, 28, 1)


BAD = [
    (dict(steps=65), "steps"),
    (dict(guidance=-1.0), "guidance"),
    (dict(guidance=float("nan")), "guidance"),
    (dict(guidance=1000.0), "guidance"),
    (dict(count=10**6), "count"),
]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kwargs, pattern", BAD)
def test_bad_requests_are_invalid_argument_everywhere(model, kwargs, pattern, engine, daemon, repo, tmp_path):
    need(repo, model)
    from coalesce_client import CoalesceError
    with pytest.raises(coalesce.InvalidArgumentError, match=pattern):
        engine.generate(model, **{"steps": 2, **kwargs})
    with pytest.raises(CoalesceError, match=pattern) as e:
        daemon.generate(model, **{"steps": 2, **kwargs})
    assert e.value.name == "INVALID_ARGUMENT", e.value
    args = [CLI, "generate", "--model", model, "--models-dir", str(repo), "--out", str(tmp_path / "bad"),
            "--steps", str(kwargs.get("steps", 2)), "--count", str(kwargs.get("count", 1))]
    if "guidance" in kwargs:
        args += [f"--guidance={kwargs['guidance']}"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode != 0 and pattern in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


@pytest.mark.parametrize("model", ["latent-diffusion", "nested-unet"])
def test_cancel_at_the_next_step(model, engine, repo):
    need(repo, model)
    seen = []

    def progress(step, total):
        seen.append((step, total))
        return step < 3

    with pytest.raises(coalesce.CancelledError):
        engine.generate(model, prompt="bag", steps=20, count=2, progress=progress)
    assert seen[-1][0] == 3 and seen[0] == (1, 20)


@pytest.mark.parametrize("model", ["latent-diffusion", "nested-unet"])
def test_guidance_interval_in_config_json(model, repo, tmp_path):
    """A model directory's config.json may limit guidance to a band of noise levels
    ("guidance_interval": [lo, hi], fractions of the noise range, 1 = pure noise): [0, 1] is
    every step, a band holding none of 2 trailing steps (t = 999, 499) is guidance 1, null
    removes the weights' band; a malformed band refuses the load with the key's name (a
    backend's own config field: CZ_INTERNAL, as for the test backend's step_delay_ms)."""
    need(repo, model)
    src = (repo / model).resolve()
    conf = json.loads((src / "config.json").read_text())
    conf.pop("guidance_interval", None)

    def variant(name, **extra):
        d = tmp_path / name
        d.mkdir()
        (d / conf["weights"]).symlink_to(src / conf["weights"])
        (d / "config.json").write_text(json.dumps({**conf, **extra}))
        return d

    kw = dict(prompt="bag", seed=3, steps=2, count=2)
    with coalesce.Engine(plugin_dir=str(plugin_dir())) as eng:
        for name, extra in [("none", dict(guidance_interval=None)), ("all", dict(guidance_interval=[0, 1])),
                            ("band", dict(guidance_interval=[0.6, 0.9]))]:
            eng.load_model(name, variant(name, **extra))
        every = eng.generate("none", guidance=2.5, **kw)
        np.testing.assert_array_equal(eng.generate("all", guidance=2.5, **kw), every)
        np.testing.assert_array_equal(eng.generate("band", guidance=2.5, **kw), eng.generate("none", guidance=1.0, **kw))
        assert not np.array_equal(every, eng.generate("none", guidance=1.0, **kw))
        for i, bad in enumerate([[0.5, 0.5], [0.2], "x", [True, 1], [0.1, 2]]):
            with pytest.raises(coalesce.CoalesceError, match="guidance_interval"):
                eng.load_model(f"bad{i}", variant(f"bad{i}", guidance_interval=bad))


def test_clip_settings_in_config_json(repo, tmp_path):
    """nested-unet's config.json may set "clip_sample" and "clip_recompute_noise" (booleans): the
    recomputed noise changes images only where x0 is clipped, clip_sample false turns clipping off;
    the latent models, which do not clip, refuse both keys by name, as does a non-boolean."""
    need(repo, "nested-unet", "latent-diffusion")

    def variant(model, name, **extra):
        src = (repo / model).resolve()
        conf = json.loads((src / "config.json").read_text())
        for k in ("clip_sample", "clip_recompute_noise"):
            conf.pop(k, None)
        d = tmp_path / name
        d.mkdir()
        (d / conf["weights"]).symlink_to(src / conf["weights"])
        (d / "config.json").write_text(json.dumps({**conf, **extra}))
        return d

    kw = dict(prompt="bag", seed=3, steps=8, count=2, guidance=3.0)
    with coalesce.Engine(plugin_dir=str(plugin_dir())) as eng:
        for name, extra in [("keep", dict(clip_recompute_noise=False)), ("recompute", dict(clip_recompute_noise=True)),
                            ("noclip", dict(clip_sample=False)), ("noclip2", dict(clip_sample=False, clip_recompute_noise=True))]:
            eng.load_model(name, variant("nested-unet", name, **extra))
        keep, recompute = eng.generate("keep", **kw), eng.generate("recompute", **kw)
        noclip = eng.generate("noclip", **kw)
        assert not np.array_equal(keep, recompute) and not np.array_equal(keep, noclip)
        np.testing.assert_array_equal(eng.generate("noclip2", **kw), noclip)  # nothing to recompute without clipping
        for i, (model, extra) in enumerate([("latent-diffusion", dict(clip_sample=True)),
                                            ("latent-diffusion", dict(clip_recompute_noise=True)),
                                            ("nested-unet", dict(clip_recompute_noise=1))]):
            with pytest.raises(coalesce.CoalesceError, match="clip_"):
                eng.load_model(f"bad{i}", variant(model, f"bad{i}", **extra))


def test_teacher_coupled_coalescer_defaults_to_one_step(tmp_path):
    """models/coalescer-v3 asks for one step in config.json ("default_steps": 1, which a Swift
    plugin once refused because JSON 1 also reads as true): steps 0 means 1 in the library and
    the CLI."""
    src = MODELS_ROOT / "coalescer-v3"
    if not (src / "config.json").exists():
        pytest.skip(f"{src} is not a trained model")
    with coalesce.Engine(plugin_dir=str(plugin_dir())) as eng:
        eng.load_model("coalescer-v3", src)
        assert eng.model_info("coalescer-v3").default_steps == 1
        default = eng.generate("coalescer-v3", prompt="bag", seed=3, steps=0, count=2)
        one = eng.generate("coalescer-v3", prompt="bag", seed=3, steps=1, count=2)
        two = eng.generate("coalescer-v3", prompt="bag", seed=3, steps=2, count=2)
    np.testing.assert_array_equal(default, one)
    assert not np.array_equal(one, two)
    cli = cli_generate(src.parent, tmp_path, "coalescer-v3", "bag", 3, 0, 2, 0.0)
    np.testing.assert_array_equal(cli, one)


def test_generate_any_count_in_requests_of_the_engine_limit(tmp_path):
    """`coalesce generate --count 100` writes 100 PNGs in requests of at most 64, image i keeping
    seed + i: the first 64 are the bytes of `--count 64`, the last 36 those of `--count 36` from
    seed + 64; the library takes the 100 in one call (the engine runs parts of the model's
    max_batch where 100 is more) and gives the same pixels."""
    src = MODELS_ROOT / "coalescer"
    if not (src / "config.json").exists():
        pytest.skip(f"{src} is not a trained model")
    hundred = cli_generate(src.parent, tmp_path, "coalescer", "ankle boot", 5, 0, 100, 0.0)
    assert hundred.shape == (100, 28, 28)
    assert len(list((tmp_path / "cli-coalescer-5-0").glob("*.png"))) == 100
    first = cli_generate(src.parent, tmp_path / "a", "coalescer", "ankle boot", 5, 0, 64, 0.0)
    rest = cli_generate(src.parent, tmp_path / "b", "coalescer", "ankle boot", 5 + 64, 0, 36, 0.0)
    np.testing.assert_array_equal(hundred[:64], first)
    np.testing.assert_array_equal(hundred[64:], rest)
    with coalesce.Engine(plugin_dir=str(plugin_dir())) as eng:
        eng.load_model("coalescer", src)
        np.testing.assert_array_equal(eng.generate("coalescer", prompt="ankle boot", seed=5, count=64), first)
        steps = []
        lib = eng.generate("coalescer", prompt="ankle boot", seed=5, count=100, progress=lambda s, t: steps.append((s, t)))
        np.testing.assert_array_equal(lib, hundred)
        assert steps and steps[-1][0] == steps[-1][1]  # progress runs to its end (over all parts, if any)
    # Piped, the CLI prints its one result line and no progress.
    proc = subprocess.run([CLI, "generate", "--model", "coalescer", "--models-dir", str(src.parent), "--prompt", "bag",
                           "--count", "3", "--out", str(tmp_path / "quiet")], capture_output=True, text=True, check=True)
    assert proc.stderr == "" and proc.stdout.startswith("wrote 3 images")


def test_info_shows_what_a_user_needs_to_pick_a_model():
    """`coalesce info --json`: each model's default steps and guidance, text encoder, and its
    stored bench row where there is one."""
    proc = subprocess.run([CLI, "info", "--json", "--models-dir", str(MODELS_ROOT), "--bench-results", str(REPO / "bench/results")],
                          capture_output=True, text=True, check=True)
    import json
    models = {m["name"]: m for m in json.loads(proc.stdout)["models"]}
    if "coalescer" not in models or "latent-diffusion" not in models:
        pytest.skip("the bundled models are not there")
    co, te = models["coalescer"], models["latent-diffusion"]
    assert co["default_steps"] == 2 and "default_guidance" not in co and co["text_encoder"] == "trigram"
    # The teacher's sampling settings are its config.json's (guidance only below 70% noise).
    te_config = json.loads((MODELS_ROOT / "latent-diffusion" / "config.json").read_text())
    assert te["default_steps"] == 50 and te["default_guidance"] == te_config["default_guidance"]
    assert te.get("guidance_interval") == te_config.get("guidance_interval")
    if (REPO / "bench/results/coalescer-2.json").exists():
        assert co["bench"]["steps"] == 2 and co["bench"]["fid"] > 0
