"""Tiny datasets in the exact native formats, and named ways to break them.

Taught in ``01_data``: :func:`write_fixture` writes a small but complete
CUHK-PEDES, ICFG-PEDES or RSTPReid root (real JPEG/PNG images of simple
coloured pedestrians, captions that describe them, the published annotation
fields and realistic image paths); :func:`break_fixture` then damages it in one
named way (:data:`BREAK_KINDS`) so that the reader and ``tireid check-data`` can
be seen reacting to a broken root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, TypeVar

import numpy as np
from PIL import Image

from tireid_lite.data.readers import IMAGE_DIR, dataset_format
from tireid_lite.errors import ConfigError, DatasetError

FIXTURE_DATASETS = ("cuhk-pedes", "icfg-pedes", "rstpreid")
BREAK_KINDS = (
    "malformed-json",
    "missing-field",
    "wrong-type",
    "missing-image",
    "corrupt-image",
    "empty-caption",
    "non-ascii-caption",
    "duplicate-path",
    "non-integer-id",
    "icfg-name-mixup",
    "caption-all-only",
)

DEFAULT_IDS_PER_SPLIT: dict[str, dict[str, int]] = {
    "cuhk-pedes": {"train": 4, "val": 2, "test": 2},
    "icfg-pedes": {"train": 4, "test": 2},
    "rstpreid": {"train": 4, "val": 2, "test": 2},
}
CAPTIONS_PER_IMAGE = {"cuhk-pedes": 2, "icfg-pedes": 1, "rstpreid": 2}
FIRST_ID = {"cuhk-pedes": 1, "icfg-pedes": 0, "rstpreid": 0}  # CUHK-PEDES counts from 1

COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 32), "white": (232, 232, 226), "grey": (128, 128, 132),
    "red": (196, 34, 40), "blue": (44, 72, 186), "green": (46, 138, 64),
    "yellow": (228, 198, 44), "orange": (232, 128, 34), "purple": (118, 52, 148),
    "pink": (232, 142, 172), "brown": (118, 76, 42),
}
HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (20, 18, 18), "brown": (92, 58, 30), "blond": (214, 184, 110),
}
SKIN = (222, 178, 148)
TOPS = ("t-shirt", "jacket", "shirt", "coat", "sweater")
BOTTOMS = ("jeans", "trousers", "shorts", "skirt")
SHOES = ("shoes", "sneakers", "boots")
BAGS = (None, "backpack", "handbag", "shoulder bag")

T = TypeVar("T")


@dataclass(frozen=True)
class Person:
    """The attributes one fixture identity is drawn and described with."""

    gender: str  # "man" or "woman"
    hair_length: str
    hair_colour: str
    top: str
    top_colour: str
    bottom: str
    bottom_colour: str
    shoes: str
    shoes_colour: str
    bag: str | None
    bag_colour: str


def write_fixture(
    dataset: str,
    root: str | os.PathLike[str],
    *,
    ids_per_split: int | Mapping[str, int] | None = None,
    images_per_id: int = 2,
    size: tuple[int, int] = (48, 16),
    seed: int = 0,
) -> Path:
    """Write a tiny ``dataset`` root in its native format at ``root`` and return ``root``.

    ``ids_per_split``: identities per split, one number for every split of the
    dataset or a mapping such as ``{"train": 4, "test": 2}`` (default
    :data:`DEFAULT_IDS_PER_SPLIT`). ``size`` is (height, width) of every image.
    The same arguments always give the same files. ``root`` must be absent or an
    empty folder; the dataset is written beside it and renamed into place.
    """
    if dataset not in FIXTURE_DATASETS:
        raise ConfigError(f"write_fixture writes {', '.join(FIXTURE_DATASETS)}, not {dataset!r}; "
                          "SynthPEDES comes from `tireid synth --out DIR`")
    counts = _ids_per_split(dataset, ids_per_split)
    _check_positive("images_per_id", images_per_id, minimum=1)
    if not (isinstance(size, (tuple, list)) and len(size) == 2):
        raise ConfigError(f"size must be (height, width), got {size!r}")
    for value in size:
        _check_positive("each side of size", value, minimum=8)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"{root} already exists and is not an empty folder; write_fixture does not "
                           "overwrite anything, so pass a new or empty folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.{uuid.uuid4().hex}.partial"
    staging.mkdir()
    try:
        _write_dataset(dataset, staging, counts, images_per_id, (int(size[0]), int(size[1])), seed)
        if root.exists():
            root.rmdir()
        os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def break_fixture(root: str | os.PathLike[str], dataset: str, kind: str, *, entry: int = 1) -> str:
    """Damage the dataset at ``root`` in one named way (see :data:`BREAK_KINDS`); say what was done.

    ``entry`` is the index of the annotation entry to damage (default 1, so that
    messages show the index matters); ``duplicate-path`` gives it entry 0's
    path and ``malformed-json`` removes the comma in front of it. Kinds can be
    combined on one root when they target different entries.
    ``icfg-name-mixup`` needs ``icfg-pedes``; ``caption-all-only`` needs a
    ``reid_raw.json`` root.
    """
    fmt = dataset_format(dataset)
    if kind not in BREAK_KINDS:
        raise ConfigError(f"unknown break kind {kind!r}; use one of {', '.join(BREAK_KINDS)}")
    if kind == "icfg-name-mixup" and fmt.name != "icfg-pedes":
        raise ConfigError("break kind 'icfg-name-mixup' applies to icfg-pedes only")
    if kind == "caption-all-only" and fmt.annotation != "reid_raw.json":
        raise ConfigError("break kind 'caption-all-only' applies to cuhk-pedes (and synth) only")
    root = Path(root)
    ann = root / fmt.annotation
    if not ann.is_file():
        raise DatasetError(f"{ann} not found; break_fixture needs an intact {fmt.title} root, "
                           "e.g. one written by write_fixture")
    try:
        entries = json.loads(ann.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{ann} is not valid JSON ({err.msg}); break_fixture needs an intact "
                           f"{fmt.title} root, e.g. one written by write_fixture") from err
    if kind == "icfg-name-mixup":
        os.replace(ann, root / "ICFG_PEDES.json")
        return "renamed ICFG-PEDES.json to ICFG_PEDES.json"
    if kind == "caption-all-only":
        caption_all = [{k: e[k] for k in ("id", "file_path", "captions") if k in e} for e in entries]
        _write_bytes_atomic(root / "caption_all.json", dump_entries(caption_all).encode("utf-8"))
        ann.unlink()
        return "replaced reid_raw.json by caption_all.json (no split field)"
    first = 1 if kind in ("malformed-json", "duplicate-path") else 0
    if isinstance(entry, bool) or not isinstance(entry, int) or not first <= entry < len(entries):
        raise ConfigError(f"entry must be an index from {first} to {len(entries) - 1} into {ann.name}, "
                          f"got {entry!r}")
    index = entry
    record = entries[index]
    intact = isinstance(record, dict) and isinstance(record.get(fmt.path_field), str) and "id" in record
    if not (intact and isinstance(record.get("captions"), list) and record["captions"]):
        raise DatasetError(f"entry {index} of {ann} is already damaged; pick another entry")
    rel = record[fmt.path_field]
    image = root / IMAGE_DIR / rel
    where = f"entry {index} of {ann.name}"
    if kind in ("missing-image", "corrupt-image") and not image.is_file():
        raise DatasetError(f"{image} not found; break_fixture needs the image of {where} to be present")
    if kind == "malformed-json":
        lines = dump_entries(entries).split("\n")  # lines[k + 1] holds entry k
        lines[index] = lines[index].removesuffix(",")
        _write_bytes_atomic(ann, "\n".join(lines).encode("utf-8"))
        return f"removed the comma between entries {index - 1} and {index} of {ann.name}"
    if kind == "missing-field":
        del record["id"]
        change = f"removed field 'id' from {where}"
    elif kind == "wrong-type":
        record["captions"] = record["captions"][0]
        change = f"replaced the caption list of {where} by its first caption (a bare string)"
    elif kind == "missing-image":
        image.unlink()
        return f"deleted {IMAGE_DIR}/{rel} ({where})"
    elif kind == "corrupt-image":
        data = image.read_bytes()
        _write_bytes_atomic(image, data[: len(data) // 2])
        return f"cut {IMAGE_DIR}/{rel} ({where}) to its first half"
    elif kind == "empty-caption":
        record["captions"][0] = ""
        change = f"emptied caption 0 of {where}"
    elif kind == "non-ascii-caption":
        record["captions"][0] = record["captions"][0].rstrip(".") + "\u2026"
        change = f"ended caption 0 of {where} with an ellipsis character (U+2026)"
    elif kind == "duplicate-path":
        record[fmt.path_field] = entries[0][fmt.path_field]
        change = f"gave {where} the image path of entry 0"
    else:  # non-integer-id
        record["id"] = str(record["id"])
        change = f"wrote the id of {where} as a string"
    _write_bytes_atomic(ann, dump_entries(entries).encode("utf-8"))
    return change


def draw_pedestrian(person: Person, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A (height, width, 3) uint8 picture of ``person`` on a plain background, with jitter and noise."""
    height, width = size
    ys, xs = np.mgrid[0:height, 0:width]
    y = (ys + 0.5) / height  # (H, W), 0 at the top
    x = (xs + 0.5) / width - 0.5 - rng.uniform(-0.06, 0.06)  # (H, W), 0 on the body's axis
    ax = np.abs(x)
    background = rng.integers(90, 200, size=3)
    canvas = np.broadcast_to(background, (height, width, 3)).astype(np.float64)

    def paint(mask: np.ndarray, colour: Sequence[int]) -> None:
        canvas[mask] = colour

    long_hair = person.hair_length == "long"
    hair_bottom = 0.3 if long_hair else 0.1
    paint((y > 0.03) & (y < hair_bottom) & (ax < 0.2), HAIR_COLOURS[person.hair_colour])
    paint(((x / 0.15) ** 2 + ((y - 0.13) / 0.075) ** 2 <= 1) & (y > 0.07), SKIN)  # face
    top = COLOURS[person.top_colour]
    sleeve = SKIN if person.top == "t-shirt" else top
    paint((y >= 0.21) & (y < 0.56) & (ax < 0.27), top)
    paint((y >= 0.22) & (y < 0.52) & (ax >= 0.27) & (ax < 0.37), sleeve)
    bottom = COLOURS[person.bottom_colour]
    legs = (y >= 0.56) & (y < 0.91) & (ax > 0.03) & (ax < 0.22)
    paint(legs, SKIN if person.bottom in ("shorts", "skirt") else bottom)
    if person.bottom == "shorts":
        paint(legs & (y < 0.7), bottom)
    if person.bottom == "skirt":
        paint((y >= 0.56) & (y < 0.75) & (ax < 0.2 + 0.25 * (y - 0.56)), bottom)
    paint((y >= 0.91) & (y < 0.97) & (ax > 0.02) & (ax < 0.25), COLOURS[person.shoes_colour])
    if person.bag is not None:
        bag = COLOURS[person.bag_colour]
        if person.bag == "backpack":
            paint((y >= 0.22) & (y < 0.48) & (x >= 0.27) & (x < 0.45), bag)
        else:
            paint((y >= 0.45) & (y < 0.62) & (x <= -0.3) & (x > -0.47), bag)
    canvas = canvas * rng.uniform(0.85, 1.15) + rng.normal(0.0, 5.0, size=canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def describe(person: Person, template: int, rng: np.random.Generator) -> str:
    """One caption of ``person`` from template number ``template`` (0-3), with drawn synonyms."""
    man = person.gender == "man"
    noun = _pick(rng, ("man", "guy", "male pedestrian") if man else ("woman", "lady", "female pedestrian"))
    he, his = ("he", "his") if man else ("she", "her")
    top = f"{_a(person.top_colour)} {person.top_colour} {person.top}"
    bottom = f"{person.bottom_colour} {person.bottom}"
    if person.bottom == "skirt":
        bottom = f"{_a(person.bottom_colour)} {bottom}"
    shoes = f"{person.shoes_colour} {person.shoes}"
    hair = f"{person.hair_length} {person.hair_colour}"
    bag = f"{_a(person.bag_colour)} {person.bag_colour} {person.bag}" if person.bag else None
    carry = f" and carries {bag}" if bag else ""
    if template == 0:
        return (f"{_a(noun).capitalize()} {noun} with {hair} hair is wearing {top} and {bottom}. "
                f"{he.capitalize()} has {shoes} on{carry}.")
    if template == 1:
        tail = f"{he.capitalize()} is carrying {bag}." if bag else f"{he.capitalize()} carries nothing."
        return f"The {noun} is dressed in {top} with {bottom} and a pair of {shoes}. {tail}"
    if template == 2:
        return (f"This {noun} has {hair} hair and wears {bottom} with {top}. "
                f"{he.capitalize()} is also wearing {shoes}{carry}.")
    with_bag = f", with {bag}" if bag else ""
    return (f"{_a(noun).capitalize()} {noun} in {top}, {bottom} and {shoes}{with_bag}. "
            f"{his.capitalize()} hair is {person.hair_length} and {person.hair_colour}.")


def dump_entries(entries: list) -> str:
    """A JSON list with one entry per line, so that line ``k + 2`` of the file holds entry ``k``."""
    return "[\n" + ",\n".join(json.dumps(entry, ensure_ascii=False) for entry in entries) + "\n]\n"


def tokenize_caption(caption: str) -> list[str]:
    """Lower-case word tokens without punctuation, as in CUHK-PEDES's ``processed_tokens``."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", caption.lower())


def _write_dataset(dataset: str, root: Path, counts: dict[str, int], images_per_id: int,
                   size: tuple[int, int], seed: int) -> None:
    """Draw every image and write the annotation file under ``root`` (a fresh folder)."""
    fmt = dataset_format(dataset)
    rng = np.random.default_rng(seed)
    entries: list[dict] = []
    identity = 0  # running index over every identity of the dataset
    for split in fmt.splits:
        for folder_index in range(counts.get(split, 0)):
            person = _random_person(rng)
            pid = FIRST_ID[dataset] + identity
            for j in range(images_per_id):
                rel = _image_path(dataset, identity, j, split, folder_index)
                target = root / IMAGE_DIR / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                picture = Image.fromarray(draw_pedestrian(person, size, rng))
                picture.save(target, **({"quality": 92} if target.suffix == ".jpg" else {}))
                templates = rng.permutation(4)[: CAPTIONS_PER_IMAGE[dataset]]
                captions = [describe(person, int(t), rng) for t in templates]
                entries.append(_entry(dataset, split, pid, rel, captions))
            identity += 1
    (root / fmt.annotation).write_text(dump_entries(entries), encoding="utf-8")


def _entry(dataset: str, split: str, pid: int, rel: str, captions: list[str]) -> dict:
    """One annotation object with the fields (and field order) of the dataset's file."""
    if dataset == "rstpreid":
        return {"id": pid, "img_path": rel, "captions": captions, "split": split}
    return {"split": split, "captions": captions, "file_path": rel,
            "processed_tokens": [tokenize_caption(c) for c in captions], "id": pid}


def _image_path(dataset: str, identity: int, j: int, split: str, folder_index: int) -> str:
    """A realistic, unique image path for image ``j`` of an identity."""
    if dataset == "rstpreid":  # MSMT17 names: person_camera_frame
        return f"{identity:04d}_c{(identity + 5 * j) % 15 + 1:02d}_{31 + 100 * j:04d}.jpg"
    if dataset == "icfg-pedes":  # MSMT17 storage: folder/person/person_cam_..._time_frame_k
        folder = "train" if split == "train" else "test"
        cam = (identity + 3 * j) % 15 + 1
        time = ("morning", "noon", "afternoon")[(identity + j) % 3]
        return (f"{folder}/{folder_index:04d}/{folder_index:04d}_{cam:03d}_{j % 2 + 1:02d}_"
                f"0303{time}_{15 + 100 * j:04d}_{j % 2}.jpg")
    source = identity % 4  # CUHK-PEDES gathers five re-id datasets; four naming schemes here
    if source == 0:
        return f"CUHK01/{identity + 1:04d}{j + 1:03d}.png"
    if source == 1:
        return f"Market/{identity + 1:04d}_c{j % 6 + 1}s1_{1051 * (j + 1):06d}_00.jpg"
    if source == 2:
        folder = "train_query" if split == "train" else "test_query"
        return f"{folder}/p{10000 + identity}_s{20000 + 7 * identity + j}.jpg"
    return f"cam_{'ab'[j % 2]}/{identity:03d}_{45 * (j // 2 + 1)}.png"


def _random_person(rng: np.random.Generator) -> Person:
    gender = _pick(rng, ("man", "woman"))
    woman = gender == "woman"
    return Person(
        gender=gender,
        hair_length="long" if woman and rng.random() < 0.7 else "short",
        hair_colour=_pick(rng, tuple(HAIR_COLOURS)),
        top=_pick(rng, TOPS),
        top_colour=_pick(rng, tuple(COLOURS)),
        bottom=_pick(rng, BOTTOMS if woman else BOTTOMS[:3]),
        bottom_colour=_pick(rng, tuple(COLOURS)),
        shoes=_pick(rng, SHOES),
        shoes_colour=_pick(rng, tuple(COLOURS)),
        bag=_pick(rng, BAGS),
        bag_colour=_pick(rng, tuple(COLOURS)),
    )


def _ids_per_split(dataset: str, ids_per_split: int | Mapping[str, int] | None) -> dict[str, int]:
    """Identities per split, validated against the dataset's splits."""
    splits = dataset_format(dataset).splits
    if ids_per_split is None:
        return dict(DEFAULT_IDS_PER_SPLIT[dataset])
    if isinstance(ids_per_split, Mapping):
        counts = dict(ids_per_split)
    else:
        counts = {split: ids_per_split for split in splits}
    unknown = [s for s in counts if s not in splits]
    if unknown:
        raise ConfigError(f"ids_per_split names split {unknown[0]!r}, but {dataset} has splits "
                          f"{', '.join(splits)}")
    for split, count in counts.items():
        _check_positive(f"ids_per_split[{split!r}]", count, minimum=0)
    if sum(counts.values()) == 0:
        raise ConfigError("ids_per_split asks for no identities at all; give at least one split a count")
    return counts


def _check_positive(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` through a temporary file in the same folder."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[int(rng.integers(len(options)))]


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
