"""Two processes on one cache: each entry is filled once, the other process waits and then loads it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tireid_lite.cache_lock import fill_lock

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "data.synth_ids_train=8", "data.synth_ids_val=3", "data.synth_ids_test=3", "data.synth_images_per_id=2",
    "data.image_size=[48,16]", "data.max_length=48", "model.method=baseline", "model.image_width=32",
    "model.image_depth=1", "model.image_heads=2", "model.text_width=32", "model.text_depth=1",
    "model.text_heads=2", "model.embed_dim=32", "model.warm_start_steps=30", "train.batch_size=8",
]

# Each child marks every fill it does (SynthPEDES draws, the towers' pretraining) on stdout.
CHILD = textwrap.dedent(f"""
    import time
    import torch
    torch.set_num_threads(1)
    from tireid_lite.data.synth import generate
    from tireid_lite.train import warm_start
    from tireid_lite.config import apply_overrides, get_profile
    from tireid_lite.data.build import build_data

    def marked(name, fill):
        def wrapper(*args, **kwargs):
            print("FILL", name, flush=True)
            time.sleep(3)  # a slow fill, so the two processes surely overlap
            return fill(*args, **kwargs)
        return wrapper

    generate._write_dataset = marked("synth", generate._write_dataset)
    warm_start.pretrain_towers = marked("towers", warm_start.pretrain_towers)
    cfg = apply_overrides(get_profile("cpu"), {TINY!r})
    data = build_data(cfg)
    ws = warm_start.ensure_warm_start(cfg, data.tokenizer)
    print("KEY", ws.key, flush=True)
""")


def test_two_processes_fill_each_cache_entry_once(tmp_path):
    env = {**os.environ, "TIREID_CACHE": str(tmp_path / "cache"), "TIREID_PROGRESS": "0", "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0, err
    stdout = "".join(out for out, _ in outputs)
    assert stdout.count("FILL synth") == 2  # the training draw and the pretraining draw, once each
    assert stdout.count("FILL towers") == 1
    keys = {line for line in stdout.splitlines() if line.startswith("KEY")}
    assert len(keys) == 1  # both processes hold the same towers
    assert len(list((tmp_path / "cache" / "towers").glob("*.pt"))) == 1


def test_fill_lock_is_released_after_an_error(tmp_path):
    entry = tmp_path / "entry"
    try:
        with fill_lock(entry, "a test"):
            raise RuntimeError("the fill failed")
    except RuntimeError:
        pass
    with fill_lock(entry, "a test"):  # not held any more: taken at once
        pass
