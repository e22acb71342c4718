"""Generate SynthPEDES on disk in CUHK-PEDES's native layout.

``<out>/reid_raw.json`` lists every image as CUHK-PEDES does (``split``,
``captions``, ``file_path`` relative to ``<out>/imgs/``, ``processed_tokens``,
``id``); ``<out>/imgs/<split>/<id>/<id>_<k>.png`` are the images,
``<out>/parts/`` holds one part map (mode "L", values index
:data:`PART_CLASSES`) per image under the same relative path, and
``<out>/attributes.json`` records the generation parameters, every identity's
attributes, every image's view and visible features, and the hard-negative
pairs of val and test. The dataset is written into a temporary directory
beside ``out`` and moved into place at the end, so a crash never leaves half a
dataset. Taught in ``01_data``.

The detail knobs (:data:`~tireid_lite.data.synth.knobs.DETAIL_KNOBS`) add
markings to ``attributes.json``; each key is written only when its knob is on
(:func:`~tireid_lite.data.synth.markings.read_markings` reads them all, with
empty defaults):

- ``hard_negative_pairs``: ``{"ids": [a, b], "split", "attribute"}``, now in
  train too (``train_hard_negative_fraction``); ``attribute`` names the one
  described attribute the two differ in;
- ``colour_swap_pairs``: ``{"ids": [a, b], "split", "garments": [field, field],
  "colours": [c1, c2]}`` (``colour_swap_fraction``): ``a`` wears ``c1`` on the
  first garment and ``c2`` on the second, ``b`` the other way round;
- ``rare_colours``: ``{"colour", "words", "rgb", "train_identities",
  "val_identities", "test_identities"}`` per tail colour (``rare_colours``);
  a query that contains one of ``words`` names a colour rare in train;
- per identity ``difficulty``: ``normal``, ``dark`` (every image at 30-45%
  brightness) or ``occluded`` (a large occluder in every image), with
  ``dark_fraction`` / ``occluded_fraction``; the captions stay true (clean);
- per identity ``detail`` (``vocabulary=rich``): shade words per colour field,
  garment kinds, materials, fits, pattern word, accessory, carried thing and
  its colour; the top-level ``vocabulary`` says what is drawn and what is
  caption-only, and counts the words of the captions;
- per image ``distractors`` (``distractor_people``): smaller people drawn behind,
  and ``distractor_colour``, the colour of the distractor's top (or null).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tireid_lite.cache_lock import fill_lock
from tireid_lite.data.synth.attributes import RARE_COLOURS, Identity
from tireid_lite.data.synth.captions import caption_for, tokens_of
from tireid_lite.data.synth.knobs import SynthKnobs
from tireid_lite.data.synth.materials import PART_CLASSES
from tireid_lite.data.synth.plan import (
    GENERATOR_VERSION, ColourSwapPair, PlannedIdentity, SynthParams, plan_identities, views_for,
)
from tireid_lite.data.synth.png import encode_png
from tireid_lite.data.synth.render import render_scenes
from tireid_lite.data.synth.rng import scalar_rng
from tireid_lite.data.synth.scene import sample_scene
from tireid_lite.data.synth.vocab import GROUNDING, Detail, SceneNotes, scene_notes
from tireid_lite.cache import cache_dir
from tireid_lite.errors import DatasetError
from tireid_lite.progress import progress

CAPTIONS_PER_IMAGE = 2
BATCH = 256  # images drawn at once
PNG_LEVEL = 3  # zlib level: about as fast as 1 on these drawings, and smaller files
WRITER_THREADS = 2


def _write_images(root: Path, rels: list[str], images: np.ndarray, parts: np.ndarray) -> None:
    """Encode and write one batch of images and part maps (runs in a worker thread)."""
    made: set[str] = set()
    for rel, image, part in zip(rels, images, parts):
        folder = os.path.dirname(rel)
        if folder not in made:  # an identity's images may straddle two batches, hence exist_ok
            os.makedirs(os.path.join(root, "imgs", folder), exist_ok=True)
            os.makedirs(os.path.join(root, "parts", folder), exist_ok=True)
            made.add(folder)
        for top, pixels in (("imgs", image), ("parts", part)):
            with open(os.path.join(root, top, rel), "wb") as f:
                f.write(encode_png(pixels, level=PNG_LEVEL))


def _write_dataset(root: Path, params: SynthParams) -> int:
    """Write the whole dataset under ``root`` (an empty directory); returns the number of images.

    The main thread samples, draws and captions batch after batch while worker
    threads encode and write the previous batches (zlib and file writes release
    the GIL). The bytes do not depend on the batch size or the thread timing.
    """
    streams = np.random.SeedSequence([params.seed, GENERATOR_VERSION]).spawn(3)
    identity_rng, scene_rng, caption_rng = (np.random.default_rng(s) for s in streams)
    scene_draws, caption_draws = scalar_rng(scene_rng), scalar_rng(caption_rng)  # drawn in image order
    planned, pairs, swaps = plan_identities(params, identity_rng)
    knobs = params.knobs
    width = max(4, len(str(planned[-1].pid)))
    jobs = []  # (planned identity, image index, view)
    for p in planned:
        jobs += [(p, k, view) for k, view in enumerate(views_for(params.images_per_id, scene_rng))]

    entries, image_records = [], []
    with ThreadPoolExecutor(max_workers=WRITER_THREADS) as pool:
        pending: list[Future] = []
        for start in progress(range(0, len(jobs), BATCH), desc="SynthPEDES", unit="batch"):
            batch = jobs[start : start + BATCH]
            scenes = [
                sample_scene(p.identity, view, scene_draws, knobs, detail=p.detail, difficulty=p.difficulty)
                for p, _, view in batch
            ]
            drawn = render_scenes(scenes, params.size)
            rels = [f"{p.split}/{p.pid:0{width}d}/{p.pid:0{width}d}_{k:02d}.png" for p, k, _ in batch]
            pending.append(pool.submit(_write_images, root, rels, drawn.images, drawn.parts))
            for rel, (p, _, view), visible, scene in zip(rels, batch, drawn.visible, scenes):
                if scene.distractors:
                    visible = visible | {"others"}  # other people in the picture: never "the only person"
                rich = None if p.detail is None else (p.detail, scene_notes(scene, visible))
                captions = _captions(p.identity, view, visible, knobs, caption_draws, rich)
                entries.append({
                    "split": p.split,
                    "captions": captions,
                    "file_path": rel,
                    "processed_tokens": [tokens_of(c) for c in captions],
                    "id": p.pid,
                })
                image = {"file_path": rel, "id": p.pid, "view": view, "visible": sorted(visible)}
                if knobs.distractor_people > 0:
                    image["distractors"] = scene.distractors
                    image["distractor_colour"] = scene.distractor_colour or None
                image_records.append(image)
            while len(pending) > WRITER_THREADS:  # bound the batches held in memory; re-raise writer errors
                pending.pop(0).result()
        for future in pending:
            future.result()

    attributes = {
        "dataset": "SynthPEDES",
        "params": params.record(),
        "part_classes": list(PART_CLASSES),
        "identities": [_identity_record(p, knobs) for p in planned],
        "hard_negative_pairs": [
            {"ids": list(h.pids), "split": h.split, "attribute": h.attribute} for h in pairs
        ],
        **_detail_markings(planned, swaps, entries, knobs),
        "images": image_records,
    }
    (root / "reid_raw.json").write_text(json.dumps(entries) + "\n", encoding="utf-8")
    (root / "attributes.json").write_text(json.dumps(attributes) + "\n", encoding="utf-8")
    return len(jobs)


def _identity_record(p: PlannedIdentity, knobs: SynthKnobs) -> dict[str, Any]:
    record: dict[str, Any] = {"id": p.pid, "split": p.split, **p.identity.as_dict()}
    if knobs.dark_fraction > 0 or knobs.occluded_fraction > 0:
        record["difficulty"] = p.difficulty
    if p.detail is not None:
        record["detail"] = p.detail.as_dict()
    return record


def _detail_markings(
    planned: list[PlannedIdentity], swaps: list[ColourSwapPair], entries: list[dict], knobs: SynthKnobs
) -> dict[str, Any]:
    """The top-level markings of the detail knobs that are on (see the module docstring)."""
    out: dict[str, Any] = {}
    if knobs.colour_swap_fraction > 0:
        out["colour_swap_pairs"] = [
            {"ids": list(w.pids), "split": w.split, "garments": list(w.garments), "colours": list(w.colours)}
            for w in swaps
        ]
    if knobs.rare_colours > 0:
        rgb = {c.name: c.rgb for c in RARE_COLOURS}
        out["rare_colours"] = []
        for c in RARE_COLOURS[: knobs.rare_colours]:
            wearing = [p.split for p in planned if c.name in _colours_worn(p)]
            out["rare_colours"].append({
                "colour": c.name, "words": [c.name, *c.synonyms], "rgb": list(rgb[c.name]),
                **{f"{split}_identities": wearing.count(split) for split in ("train", "val", "test")},
            })
    if knobs.vocabulary == "rich":
        counts: Counter[str] = Counter()
        for entry in entries:
            for tokens in entry["processed_tokens"]:
                counts.update(tokens)
        out["vocabulary"] = {
            "style": "rich", **GROUNDING, "words": len(counts),
            "words_seen_once": sum(1 for n in counts.values() if n == 1),
            "top_words": [[w, n] for w, n in counts.most_common(20)],
        }
    return out


def _colours_worn(p: PlannedIdentity) -> set[str]:
    fields = ("hat_colour", "top_colour", "pattern_colour", "bottom_colour", "shoe_colour", "bag_colour")
    worn = {getattr(p.identity, f) for f in fields}
    if p.detail is not None and p.detail.carried:
        worn.add(p.detail.carried_colour)
    return worn - {None}


def _captions(
    identity: Identity, view: str, visible: frozenset[str], knobs: SynthKnobs, rng: random.Random,
    rich: tuple[Detail, SceneNotes] | None = None,
) -> list[str]:
    """Two captions for one image, different from each other when the grammar allows."""
    def one() -> str:
        return caption_for(identity, view, rng, visible=visible, coverage=knobs.caption_coverage, rich=rich)

    first = one()
    second = one()
    if second == first:
        second = one()
    return [first, second]


def _is_dataset(root: Path) -> bool:
    return (root / "reid_raw.json").is_file() and (root / "attributes.json").is_file()


def _is_synth_written(root: Path) -> bool:
    """Whether ``root`` holds a SynthPEDES this module wrote (its ``attributes.json`` says so)."""
    if not _is_dataset(root):
        return False
    try:
        with open(root / "attributes.json", encoding="utf-8") as fh:
            head = fh.read(64)
    except (OSError, UnicodeDecodeError):
        return False
    return head.startswith('{"dataset": "SynthPEDES"')


def generate_synth(
    out: str | os.PathLike,
    *,
    ids_train: int = 500,
    ids_val: int = 100,
    ids_test: int = 200,
    images_per_id: int = 4,
    size: tuple[int, int] = (96, 32),
    seed: int = 0,
    overwrite: bool = False,
    **knobs: Any,
) -> Path:
    """Write SynthPEDES to ``out`` and return its path (see the module docstring for the layout).

    ``size`` is (height, width), about 3:1, from 48x16 to 384x128. ``knobs``
    are :class:`SynthKnobs` fields (clutter, occlusion_prob, lighting, noise,
    jitter, hard_negative_fraction, caption_coverage, colour_zipf, and the
    detail knobs vocabulary, train_hard_negative_fraction, colour_swap_fraction,
    rare_colours, distractor_people, person_scale, dark_fraction,
    occluded_fraction; see the module docstring for their markings). A non-empty
    ``out`` is refused unless ``overwrite``, which replaces only a folder holding
    a SynthPEDES written here; the same arguments always give the same bytes. Taught in ``01_data``.
    """
    params = SynthParams.build(ids_train, ids_val, ids_test, images_per_id, size, seed, knobs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} is a file; give a directory path for the SynthPEDES output")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(
                f"{out} is not empty; choose an empty or new directory, or pass overwrite=True (--overwrite)"
            )
        if not _is_synth_written(out):
            raise DatasetError(
                f"{out} holds files that are not a SynthPEDES written by the kit (no SynthPEDES attributes.json "
                "beside reid_raw.json); --overwrite replaces only such a folder, so choose an empty or new directory"
            )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as err:
        raise _write_error(out, err) from None
    try:
        _write_dataset(tmp, params)
        _move_into_place(tmp, out)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(out, err) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_error(out: Path, err: OSError) -> DatasetError:
    """One sentence for a folder that cannot take the dataset (read-only, full, busy); ``out`` is left as it was."""
    return DatasetError(
        f"cannot write SynthPEDES to {out}: {err.strerror or err}"
        f"{f' ({err.filename})' if err.filename and str(err.filename) != str(out) else ''}; choose a writable "
        "folder with free space (the dataset is written beside it first, then moved into place)"
    )


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        os.replace(tmp, out)  # an empty directory is replaced atomically
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / "data")
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def synth_cache_path(
    *,
    ids_train: int = 500,
    ids_val: int = 100,
    ids_test: int = 200,
    images_per_id: int = 4,
    size: tuple[int, int] = (96, 32),
    seed: int = 0,
    **knobs: Any,
) -> Path:
    """Where :func:`ensure_synth` keeps the dataset for these parameters: ``<cache>/synth/<key>``."""
    params = SynthParams.build(ids_train, ids_val, ids_test, images_per_id, size, seed, knobs)
    return _cache_path(params)


def _cache_path(params: SynthParams) -> Path:
    return cache_dir() / "synth" / params.cache_key()


def ensure_synth(
    *,
    ids_train: int = 500,
    ids_val: int = 100,
    ids_test: int = 200,
    images_per_id: int = 4,
    size: tuple[int, int] = (96, 32),
    seed: int = 0,
    **knobs: Any,
) -> Path:
    """The cached SynthPEDES for these parameters, generated on first use.

    Kept under ``$TIREID_CACHE/synth/<key>`` (default ``~/.cache/tireid-lite``),
    where ``<key>`` hashes the parameters. Safe when several processes ask at
    once: the first draws it (into a temporary directory renamed into place)
    while the others wait on ``<key>.lock``, then read it. Taught in ``01_data``.
    """
    params = SynthParams.build(ids_train, ids_val, ids_test, images_per_id, size, seed, knobs)
    final = _cache_path(params)
    if _is_dataset(final):
        return final
    with fill_lock(final, "drawing SynthPEDES"):
        if _is_dataset(final):  # drawn by another process while this one waited
            return final
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
            try:
                _write_dataset(tmp, params)
                try:
                    os.replace(tmp, final)
                except OSError:
                    if not _is_dataset(final):  # an unfinished leftover, not a finished copy from another process
                        _move_into_place(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as err:
            raise DatasetError(
                f"cannot write the cached SynthPEDES {final}: {err.strerror or err}; free some space there or "
                "set TIREID_CACHE to a writable folder"
            ) from None
    return final
