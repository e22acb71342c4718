"""Native readers: a dataset root in its published layout -> one :class:`PedesDataset`.

Taught in ``01_data``. Four layouts are understood, each with images under
``<root>/imgs/``:

* ``cuhk-pedes``: ``reid_raw.json``, a list of ``{"split", "captions", "file_path",
  "processed_tokens", "id"}`` objects (identities start at 1);
* ``icfg-pedes``: ``ICFG-PEDES.json``, the same fields, splits ``train`` and ``test``;
* ``rstpreid``: ``data_captions.json``, a list of ``{"id", "img_path", "captions",
  "split"}`` objects, two captions per image;
* ``synth`` (SynthPEDES, written by ``tireid synth``): CUHK-PEDES's layout plus
  ``parts/`` (one part-label PNG per image) and ``attributes.json``.

Readers validate the structure of the annotation file and raise
:class:`~tireid_lite.errors.DatasetError` on the first fatal problem, naming the
file, the entry (0-based index into the JSON list) and the fix. They never open
an image. The same per-entry validation feeds the dataset checker
(:mod:`tireid_lite.data.checker`), which collects every problem instead of
stopping; so a root the checker passes is a root the reader reads.

``processed_tokens`` is not used by the kit (captions are tokenised by
:mod:`tireid_lite.text`); when present and malformed it earns a warning only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from tireid_lite.data.records import SPLITS, ImageRecord, PedesDataset
from tireid_lite.errors import DatasetError
from tireid_lite.progress import progress

DATASETS = ("cuhk-pedes", "icfg-pedes", "rstpreid", "synth")
IMAGE_DIR = "imgs"
PARTS_DIR = "parts"
ATTRIBUTES_FILE = "attributes.json"
SETUP_GUIDE = "data_setup/README.md"
SEVERITIES = ("error", "warning", "note")

CUHK_SOURCE_README = (
    "github.com/ShuangLI59/Person-Search-with-Natural-Language-Description"
    " (README, 'Data Preparation', step 2)"
)


@dataclass(frozen=True)
class DatasetFormat:
    """How one dataset lays out its annotation file."""

    name: str  # the name used by read_dataset and --dataset
    title: str  # the dataset's published name
    annotation: str  # annotation file name, directly under the root
    path_field: str  # the entry field holding the image path relative to imgs/
    splits: tuple[str, ...]  # the splits the published dataset has
    example_path: str  # a realistic image path, quoted in messages
    captions_per_image: int | None = None  # a fixed published number, if any


FORMATS: dict[str, DatasetFormat] = {
    "cuhk-pedes": DatasetFormat(
        "cuhk-pedes", "CUHK-PEDES", "reid_raw.json", "file_path", SPLITS, "CUHK01/0363004.png"
    ),
    "icfg-pedes": DatasetFormat(
        "icfg-pedes",
        "ICFG-PEDES",
        "ICFG-PEDES.json",
        "file_path",
        ("train", "test"),
        "train/0001/0001_004_01_0303morning_0015_0.jpg",
    ),
    "rstpreid": DatasetFormat(
        "rstpreid", "RSTPReid", "data_captions.json", "img_path", SPLITS, "0000_c14_0031.jpg", 2
    ),
    "synth": DatasetFormat(
        "synth", "SynthPEDES", "reid_raw.json", "file_path", SPLITS, "train/0001_00.png"
    ),
}

# Annotation files that betray another dataset (or a misnamed one) when the expected file is absent.
_TELLTALE_FILES = {
    "data_captions.json": "rstpreid",
    "ICFG-PEDES.json": "icfg-pedes",
    "ICFG_PEDES.json": "icfg-pedes",
    "reid_raw.json": "cuhk-pedes",
    "caption_all.json": "cuhk-pedes",
}


@dataclass(frozen=True)
class Problem:
    """One finding about a dataset root: ``error`` makes it unusable, ``warning`` and ``note`` do not."""

    severity: str  # one of SEVERITIES
    message: str
    kind: str = ""  # a short label grouping findings of the same sort (used to cap long lists)


def dataset_format(name: str) -> DatasetFormat:
    """The :class:`DatasetFormat` of ``name``; an unknown name gets one error listing the valid ones."""
    if name not in FORMATS:
        raise DatasetError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    return FORMATS[name]


def detect_dataset(root: str | os.PathLike[str]) -> str | None:
    """Which dataset ``root`` holds, judged by its files (SynthPEDES: ``attributes.json`` and ``parts/`` beside
    ``reid_raw.json``), or None when no annotation file is recognised."""
    root = Path(root)
    if (root / "reid_raw.json").is_file():
        return "synth" if (root / ATTRIBUTES_FILE).is_file() and (root / PARTS_DIR).is_dir() else "cuhk-pedes"
    if (root / "ICFG-PEDES.json").is_file():
        return "icfg-pedes"
    if (root / "data_captions.json").is_file():
        return "rstpreid"
    return None


def check_root(fmt: DatasetFormat, root: Path) -> None:
    """Raise unless ``root`` is an existing folder."""
    hint = f"pass the folder that holds {fmt.annotation} and {IMAGE_DIR}/ (see {SETUP_GUIDE})"
    if root.is_symlink() and not root.exists():
        raise DatasetError(
            f"dataset root {root} is a symbolic link that leads nowhere (a loop or a missing target); {hint}"
        )
    if not root.exists():
        raise DatasetError(f"dataset root {root} does not exist; {hint}")
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is a file, not a folder; {hint}")


def annotation_problem(fmt: DatasetFormat, root: Path) -> Problem | None:
    """None when ``<root>/<annotation>`` is a file, else an error saying what to do.

    Recognises the usual mix-ups: ``ICFG_PEDES.json`` for ``ICFG-PEDES.json``,
    CUHK-PEDES's ``caption_all.json`` without ``reid_raw.json``, another
    dataset's annotation file, and a root one level above the dataset folder.
    """
    expected = root / fmt.annotation
    if expected.is_file():
        return None
    if expected.exists():
        return Problem("error", f"{expected} is not a file; put the {fmt.title} annotation file there",
                       "annotation file")
    if fmt.name == "icfg-pedes" and (root / "ICFG_PEDES.json").is_file():
        return Problem("error", f"{root / 'ICFG_PEDES.json'} found: the reader expects ICFG-PEDES.json "
                       "(with a hyphen); rename it to ICFG-PEDES.json", "annotation file")
    if fmt.annotation == "reid_raw.json" and (root / "caption_all.json").is_file():
        return Problem("error", f"{root / 'caption_all.json'} found but {expected} is missing: the reader "
                       "needs reid_raw.json, the CUHK-PEDES annotation with the train/val/test split that "
                       f"IRRA uses; download it from the link in {CUHK_SOURCE_README} and save it as "
                       f"{expected}", "annotation file")
    for file_name, other in _TELLTALE_FILES.items():
        if other != fmt.name and file_name != fmt.annotation and (root / file_name).is_file():
            title = FORMATS[other].title
            rename = ""
            if file_name != FORMATS[other].annotation and file_name != "caption_all.json":
                rename = f" (and rename {file_name} to {FORMATS[other].annotation})"
            return Problem("error", f"{expected} not found but {root / file_name} is there: this looks "
                           f"like {title}; use --dataset {other}{rename}", "annotation file")
    nested = sorted(p for p in root.glob(f"*/{fmt.annotation}") if p.is_file())
    if nested:
        return Problem("error", f"{expected} not found but {nested[0]} is there: point the root at "
                       f"{nested[0].parent}", "annotation file")
    return Problem("error", f"{expected} not found; put the {fmt.title} annotation file there "
                   f"(see {SETUP_GUIDE})", "annotation file")


def image_dir_problem(fmt: DatasetFormat, root: Path) -> Problem | None:
    """None when ``<root>/imgs/`` is a folder, else an error."""
    image_dir = root / IMAGE_DIR
    if image_dir.is_dir():
        return None
    return Problem("error", f"{image_dir}/ not found; {fmt.title} images must live under it with the "
                   f"paths of the annotation file, e.g. {image_dir / fmt.example_path}", "image folder")


def synth_extras_problems(root: Path) -> list[Problem]:
    """Errors for a SynthPEDES root without ``parts/`` or ``attributes.json``."""
    fix = "regenerate it with `tireid synth --out DIR` (a CUHK-PEDES root is read with --dataset cuhk-pedes)"
    problems = []
    if not (root / PARTS_DIR).is_dir():
        problems.append(Problem("error", f"{root / PARTS_DIR}/ not found: a SynthPEDES root holds one "
                                f"part-label PNG per image there; {fix}", "SynthPEDES layout"))
    if not (root / ATTRIBUTES_FILE).is_file():
        problems.append(Problem("error", f"{root / ATTRIBUTES_FILE} not found: a SynthPEDES root records "
                                f"the attributes behind every caption there; {fix}", "SynthPEDES layout"))
    return problems


def part_map_relpath(image_relpath: str) -> str:
    """The path of an image's part map relative to ``parts/``: the same path with extension ``.png``."""
    return str(PurePosixPath(image_relpath).with_suffix(".png"))


def load_annotations(path: Path) -> list[Any]:
    """Parse an annotation file and check that it holds a non-empty JSON list."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path} is not UTF-8 text (byte {err.start}); "
                           "fetch the annotation file again") from err
    except OSError as err:
        raise DatasetError(f"{path} cannot be read ({err.strerror}); check its permissions") from err
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column "
                           f"{err.colno}; fix the file there or fetch it again") from err
    if not isinstance(entries, list):
        raise DatasetError(f"{path} holds a JSON {_json_type(entries)}, expected a list with one "
                           "object per image; fetch the original annotation file")
    if not entries:
        raise DatasetError(f"{path} holds an empty list; it needs one object per image")
    return entries


def entry_problems(fmt: DatasetFormat, ann_path: Path, index: int, entry: Any) -> list[Problem]:
    """Every problem of one annotation entry (errors first by field, then warnings)."""
    where = f"{ann_path}: entry {index}"
    fields = ("split", "captions", fmt.path_field, "id")
    if not isinstance(entry, dict):
        return [Problem("error", f"{where} is a JSON {_json_type(entry)}, expected an object with "
                        f"fields {', '.join(fields)}", "entry not an object")]
    rel = entry.get(fmt.path_field)
    if isinstance(rel, str) and rel:
        where += f" ({fmt.path_field} {rel!r})"
    problems: list[Problem] = []

    def error(message: str, kind: str) -> None:
        problems.append(Problem("error", f"{where}: {message}", kind))

    def warning(message: str, kind: str) -> None:
        problems.append(Problem("warning", f"{where}: {message}", kind))

    missing = [f for f in fields if f not in entry]
    if missing:
        names = ", ".join(repr(f) for f in missing)
        error(f"field{'s' if len(missing) > 1 else ''} {names} missing; every {fmt.title} entry "
              f"needs {', '.join(fields)}", "missing field")
    split = entry.get("split")
    if "split" in entry and split not in SPLITS:
        error(f"field 'split' is {split!r}, expected one of "
              f"{', '.join(repr(s) for s in fmt.splits)}", "bad split")
    if fmt.path_field in entry:
        error_text = _path_error(rel, fmt, ann_path)
        if error_text:
            error(error_text, "bad image path")
    if "id" in entry and (isinstance(entry["id"], bool) or not isinstance(entry["id"], int)):
        value = entry["id"]
        example = value.strip() if isinstance(value, str) and value.strip().isdigit() else "12"
        error(f"field 'id' is {_describe(value)}, expected an integer; write it as a JSON number, "
              f"e.g. {int(example)}", "non-integer id")
    captions = entry.get("captions")
    if "captions" in entry:
        if not isinstance(captions, list):
            error(f"field 'captions' is {_describe(captions)}, expected a list of strings; "
                  'wrap the caption in a list: ["..."]', "captions not a list")
        elif not captions:
            error("field 'captions' is an empty list; add the image's captions or remove the entry",
                  "no captions")
        else:
            for k, caption in enumerate(captions):
                if not isinstance(caption, str):
                    error(f"caption {k} is {_describe(caption)}, expected a string", "caption not a string")
                elif not caption.strip():
                    error(f"caption {k} is empty; write the caption or remove it from the list",
                          "empty caption")
                elif not caption.isascii():
                    char = next(c for c in caption if ord(c) > 127)
                    warning(f"caption {k} contains the non-ASCII character {char!r} (U+{ord(char):04X}); "
                            "usable as is (real CUHK-PEDES has a few), or replace it with ASCII",
                            "non-ASCII character in a caption")
            wanted = fmt.captions_per_image
            if wanted is not None and len(captions) != wanted:
                warning(f"{len(captions)} caption{'s' if len(captions) != 1 else ''}, {fmt.title} has "
                        f"exactly {wanted} per image", f"{fmt.title} image without {wanted} captions")
    if fmt.path_field == "file_path" and "processed_tokens" in entry:
        tokens_text = _tokens_warning(entry["processed_tokens"], captions)
        if tokens_text:
            warning(f"{tokens_text} (the kit does not use this field)", "bad processed_tokens")
    return problems


def collect_records(
    fmt: DatasetFormat, ann_path: Path, entries: list[Any], on_problem: Callable[[Problem], None]
) -> list[ImageRecord]:
    """Validate every entry, hand each problem to ``on_problem``, return the valid entries' records.

    Entries with an error, and entries repeating an earlier image path, are left
    out. File order is kept.
    """
    records: list[ImageRecord] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(progress(entries, desc=f"reading {ann_path.name}", unit="entry")):
        problems = entry_problems(fmt, ann_path, index, entry)
        for problem in problems:
            on_problem(problem)
        if any(p.severity == "error" for p in problems):
            continue
        rel = entry[fmt.path_field]
        if rel in first_index:
            on_problem(Problem("error", f"{ann_path}: entry {index} ({fmt.path_field} {rel!r}): same image "
                               f"path as entry {first_index[rel]}; merge their captions into one entry "
                               "or remove one of them", "duplicate image path"))
            continue
        first_index[rel] = index
        records.append(ImageRecord(path=rel, pid=entry["id"], captions=tuple(entry["captions"]),
                                   split=entry["split"]))
    return records


def read_dataset(name: str, root: str | os.PathLike[str]) -> PedesDataset:
    """Read the dataset ``name`` (one of :data:`DATASETS`) from ``root``. Taught in ``01_data``."""
    fmt = dataset_format(name)
    root = Path(root)
    check_root(fmt, root)
    layout_problems = [annotation_problem(fmt, root), image_dir_problem(fmt, root)]
    if fmt.name == "synth":
        layout_problems += synth_extras_problems(root)
    for problem in layout_problems:
        if problem is not None:
            raise DatasetError(problem.message)
    ann_path = root / fmt.annotation
    records = collect_records(fmt, ann_path, load_annotations(ann_path), _raise_on_error)
    return PedesDataset(name=fmt.name, root=root, image_dir=root / IMAGE_DIR, records=records)


def read_cuhk_pedes(root: str | os.PathLike[str]) -> PedesDataset:
    """CUHK-PEDES from ``<root>/reid_raw.json`` and ``<root>/imgs/``."""
    return read_dataset("cuhk-pedes", root)


def read_icfg_pedes(root: str | os.PathLike[str]) -> PedesDataset:
    """ICFG-PEDES from ``<root>/ICFG-PEDES.json`` and ``<root>/imgs/``."""
    return read_dataset("icfg-pedes", root)


def read_rstpreid(root: str | os.PathLike[str]) -> PedesDataset:
    """RSTPReid from ``<root>/data_captions.json`` and ``<root>/imgs/``."""
    return read_dataset("rstpreid", root)


def read_synth(root: str | os.PathLike[str]) -> PedesDataset:
    """SynthPEDES, read like CUHK-PEDES; ``parts/`` and ``attributes.json`` must be present too."""
    return read_dataset("synth", root)


def _raise_on_error(problem: Problem) -> None:
    if problem.severity == "error":
        raise DatasetError(problem.message)


def _path_error(rel: Any, fmt: DatasetFormat, ann_path: Path) -> str | None:
    """Why ``rel`` is not a usable image path relative to ``imgs/``, or None (string tests: fast)."""
    if not isinstance(rel, str) or not rel.strip():
        return (f"field {fmt.path_field!r} is {_describe(rel)}, expected an image path relative to "
                f"{ann_path.parent / IMAGE_DIR}/ such as {fmt.example_path!r}")
    slashed = rel.replace("\\", "/")
    if slashed.startswith("/") or rel[1:2] == ":" or ".." in slashed.split("/"):
        return (f"field {fmt.path_field!r} must be relative to {ann_path.parent / IMAGE_DIR}/ (no leading "
                f"'/', drive or '..'), e.g. {fmt.example_path!r}")
    return None


def _tokens_warning(tokens: Any, captions: Any) -> str | None:
    """Why ``processed_tokens`` does not hold one list of strings per caption, or None."""
    just_strings = {str}
    if not isinstance(tokens, list) or not all(
        isinstance(words, list) and just_strings.issuperset(map(type, words)) for words in tokens
    ):
        return "field 'processed_tokens' is not a list of lists of strings"
    if isinstance(captions, list) and len(tokens) != len(captions):
        return f"field 'processed_tokens' has {len(tokens)} token lists for {len(captions)} captions"
    return None


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type."""
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "integer", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _describe(value: Any) -> str:
    """A short description of a parsed JSON value, e.g. ``the string '12'``."""
    kind = _json_type(value)
    if isinstance(value, (dict, list)):
        return f"an {kind}"
    if value is None:
        return "null"
    if isinstance(value, str) and len(value) > 30:
        value = value[:27] + "..."
    return f"the {kind} {value!r}"
