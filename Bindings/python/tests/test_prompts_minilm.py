"""Prompts from outside through a real daemon and the MiniLM coalescer (models/coalescer-v2-minilm,
with models/minilm made at set-up): other scripts, emoji, white space, 10,000 characters."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_daemon import PLUGINS, REPO, daemon_factory, pytestmark  # noqa: E402,F401

from coalesce_client import CoalesceError, ErrorCode  # noqa: E402

MODEL = REPO / "models/coalescer-v2-minilm"
MINILM = REPO / "models/minilm"


@pytest.mark.skipif(not (MINILM / "minilm.safetensors").exists() or not (PLUGINS / "libCoalescerBackend.so").exists(),
                    reason="needs models/minilm (scripts/fetch-minilm.sh) and the coalescer plugin")
def test_weird_prompts_get_images_and_long_ones_are_truncated(daemon_factory):
    d = daemon_factory("--max-prompt-bytes", "40000")
    target = d.repo / "mini"
    target.mkdir()
    shutil.copy(MODEL / "coalescer.safetensors", target / "coalescer.safetensors")
    cfg = json.loads((MODEL / "config.json").read_text())
    cfg["minilm_dir"] = str(MINILM)  # the repository's, not one beside this temporary repository
    (target / "config.json").write_text(json.dumps(cfg))
    with d.admin_client() as a:
        assert a.load_model("mini").name == "mini"
    long = ("summer footwear with straps " * 400)[:10000]
    with d.client(timeout=30) as c:
        def img(prompt: str) -> bytes:
            return c.generate("mini", prompt=prompt, seed=3, steps=2).images[0]
        for p in ["👟🩴🏖️", "运动鞋和凉鞋", "حذاء رياضي للجري", "кроссовки", "जूते और चप्पल", "Σανδάλια", "x" * 5000]:
            assert len(img(p)) == 28 * 28
        assert img("") == img("   \t\n")                   # no word pieces: unconditional
        assert img(long) == img(long[:2000])               # both cut after 254 word pieces
        assert img(long) != img(long[:100])
        with pytest.raises(CoalesceError) as e:
            c.generate("mini", prompt="x" * 40001)          # over --max-prompt-bytes: refused, not cut
        assert e.value.code == ErrorCode.INVALID_ARGUMENT and "40000" in e.value.message
