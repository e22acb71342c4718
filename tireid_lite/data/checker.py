"""The dataset checker and its command, ``tireid check-data``.

Taught in ``01_data``. :func:`check_dataset` looks at a dataset root the way the
readers (:mod:`tireid_lite.data.readers`) do, but collects every problem instead
of stopping at the first: layout mix-ups, malformed JSON, missing or mistyped
fields, missing images, empty or non-image files (by their first bytes; with
``full=True`` every image is decoded), images linked from outside the root,
a missing train split,
duplicate paths, empty captions, non-ASCII characters, SynthPEDES part maps,
human-parsing maps (``<root>/parsing/`` when present, or ``parsing_root``), and
the per-split counts beside the published ones. ``error`` problems make a root
unusable; ``warning`` and ``note`` problems do not. A count that differs from
the published one is a note (a subset may be intended).

Long lists of problems of one kind show their first :data:`MAX_LISTED` items
and one line counting the rest.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tireid_lite.data.readers import (
    ATTRIBUTES_FILE,
    DATASETS,
    IMAGE_DIR,
    PARTS_DIR,
    SETUP_GUIDE,
    SEVERITIES,
    DatasetFormat,
    Problem,
    annotation_problem,
    check_root,
    collect_records,
    dataset_format,
    image_dir_problem,
    load_annotations,
    part_map_relpath,
    synth_extras_problems,
)
from tireid_lite.data.patch_labels import PARSING_DIR, label_map_error
from tireid_lite.data.records import SPLITS, ImageRecord
from tireid_lite.errors import DatasetError
from tireid_lite.progress import progress

MAX_LISTED = 5


@dataclass(frozen=True)
class SplitCounts:
    """Identities, images and captions of one split (``None``: not published)."""

    ids: int | None
    images: int | None
    captions: int | None


# The counts published with each dataset. RSTPReid: 5 images per identity, 2 captions per image.
PUBLISHED_COUNTS: dict[str, dict[str, SplitCounts]] = {
    "cuhk-pedes": {
        "train": SplitCounts(11_003, 34_054, 68_126),
        "val": SplitCounts(1_000, 3_078, 6_158),
        "test": SplitCounts(1_000, 3_074, 6_156),
    },
    "icfg-pedes": {
        "train": SplitCounts(3_102, 34_674, None),
        "test": SplitCounts(1_000, 19_848, None),
    },
    "rstpreid": {
        "train": SplitCounts(3_701, 18_505, 37_010),
        "val": SplitCounts(200, 1_000, 2_000),
        "test": SplitCounts(200, 1_000, 2_000),
    },
}
RSTPREID_IMAGES_PER_ID = 5


@dataclass
class CheckReport:
    """What :func:`check_dataset` found: split counts and problems, most severe first."""

    dataset: str
    root: str
    splits: dict[str, SplitCounts]
    problems: list[Problem]

    @property
    def usable(self) -> bool:
        """True when no problem is an ``error``."""
        return not any(p.severity == "error" for p in self.problems)

    def to_dict(self) -> dict:
        """The ``--json`` object: dataset, root, splits and problems."""
        return {
            "dataset": self.dataset,
            "root": self.root,
            "splits": {name: {"ids": c.ids, "images": c.images, "captions": c.captions}
                       for name, c in self.splits.items()},
            "problems": [{"severity": p.severity, "message": p.message} for p in self.problems],
        }

    def format(self) -> str:
        """A summary table (split, ids, images, captions, published), then the problems."""
        lines = [f"{dataset_format(self.dataset).title} at {self.root}"]
        if not self.splits:
            lines.append("no annotation entries could be read")
        else:
            published = PUBLISHED_COUNTS.get(self.dataset, {})
            rows = [("split", "ids", "images", "captions", "published ids / images / captions")]
            for name, counts in self.splits.items():
                known = published.get(name)
                rows.append((name, f"{counts.ids:,}", f"{counts.images:,}", f"{counts.captions:,}",
                             " / ".join(_number(v) for v in (known.ids, known.images, known.captions))
                             if known else "-"))
            widths = [max(len(row[i]) for row in rows) for i in range(4)]
            for row in rows:
                cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in (1, 2, 3)] + [row[4]]
                lines.append("  ".join(cells))
        tally = Counter(p.severity for p in self.problems)
        lines.append(", ".join(f"{tally[s]} {s}{'' if tally[s] == 1 else 's'}" for s in SEVERITIES))
        lines += [f"{p.severity}: {p.message}" for p in self.problems]
        lines.append("usable: yes" if self.usable else "usable: no (fix the errors above)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def check_dataset(
    name: str,
    root: str | os.PathLike[str],
    full: bool = False,
    parsing_root: str | os.PathLike[str] | None = None,
) -> CheckReport:
    """Check the ``name`` dataset at ``root``; ``full`` also decodes every image. Taught in ``01_data``.

    Human-parsing maps (for BiLMa's semantic MIM) are checked in ``parsing_root``,
    by default ``<root>/parsing/`` when that folder exists (see
    :func:`parsing_problems`). Raises :class:`DatasetError` only when there is
    nothing to check (an unknown dataset name, a root that is missing or not a
    folder); everything else is reported as a :class:`Problem`. Nothing under
    ``root`` is modified.
    """
    fmt = dataset_format(name)
    root = Path(root)
    check_root(fmt, root)
    problems: list[Problem] = []
    records: list[ImageRecord] = []
    missing_annotation = annotation_problem(fmt, root)
    if missing_annotation is not None:
        problems.append(missing_annotation)
    else:
        ann_path = root / fmt.annotation
        try:
            entries = load_annotations(ann_path)
        except DatasetError as err:
            problems.append(Problem("error", str(err), "annotation file"))
        else:
            records = collect_records(fmt, ann_path, entries, problems.append)
    missing_image_dir = image_dir_problem(fmt, root)
    if missing_image_dir is not None:
        problems.append(missing_image_dir)
    elif records:
        problems += image_problems(fmt, root, records, full)
    if fmt.name == "synth":
        problems += synth_problems(root, records, full)
    if parsing_root is not None or (root / PARSING_DIR).is_dir():
        parsing_dir = root / PARSING_DIR if parsing_root is None else Path(parsing_root)
        problems += parsing_problems(root, records, parsing_dir, full)
    problems += convention_problems(fmt, root, records)
    if records and not any(r.split == "train" for r in records):
        present = ", ".join(sorted({r.split for r in records}))
        problems.append(Problem("error", f"{root / fmt.annotation} has no 'train' split (only {present}); "
                                "training needs one: mark the training entries with split 'train'", "no train split"))
    splits = split_counts(fmt, records) if records else {}
    problems += published_notes(fmt, splits) if records else []
    return CheckReport(fmt.name, str(root), splits, limit_listed(problems))


def image_problems(fmt: DatasetFormat, root: Path, records: list[ImageRecord], full: bool) -> list[Problem]:
    """Missing images (all of them are looked up) and, when ``full``, images that do not decode."""
    image_dir = root / IMAGE_DIR
    inside = os.path.realpath(root) + os.sep
    missing: list[str] = []
    broken: list[str] = []
    outside: list[str] = []
    for record in progress(records, desc="checking images", unit="image"):
        path = image_dir / record.path
        if not path.is_file():
            missing.append(record.path + (" (a symbolic link that leads nowhere)" if path.is_symlink() else ""))
            continue
        if not os.path.realpath(path).startswith(inside):
            outside.append(record.path)
        if full:
            reason = decode_error(path)
        else:
            reason = header_error(path)
        if reason:
            broken.append(f"{record.path} ({reason})")
    problems = []
    if outside:
        problems.append(Problem("warning", f"{len(outside)} of {len(records)} images are symbolic links to files "
                                f"outside {root}: {_first(outside)}; training reads them through the links, so "
                                "moving or deleting their targets breaks the dataset: copy them into the root to "
                                "keep it whole", "images outside the root"))
    if missing:
        problems.append(Problem("error", f"{len(missing)} of {len(records)} images missing from "
                                f"{image_dir}/: {_first(missing)}; put the images there with the paths of "
                                f"{fmt.annotation}{_misplaced_hint(root, missing)}", "missing images"))
    if broken:
        problems.append(Problem("error", f"{len(broken)} of {len(records)} images in {image_dir}/ do not "
                                f"{'decode' if full else 'look like images'}: {_first(broken)}; "
                                f"{'' if full else 'training would stop at the first one it reads, so '}"
                                "replace them with intact copies", "corrupt images"))
    return problems


# The first bytes of the image formats PIL reads for the kit's datasets.
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def header_error(path: Path) -> str | None:
    """The cheap check of every image without ``--full``: None when the file is not empty and starts like
    a PNG, JPEG, GIF, BMP, TIFF or WebP image, else why not."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError as err:
        return f"cannot be read: {err.strerror or err}"
    if not head:
        return "an empty file"
    if head.startswith(IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return None
    return f"not an image: it starts with {head[:8]!r}"


def synth_problems(root: Path, records: list[ImageRecord], full: bool) -> list[Problem]:
    """SynthPEDES extras: ``parts/``, ``attributes.json``, one part map per image (decoded when ``full``)."""
    problems = synth_extras_problems(root)
    attributes = root / ATTRIBUTES_FILE
    if attributes.is_file():
        try:
            json.loads(attributes.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            problems.append(Problem("error", f"{attributes} is not valid JSON at line {err.lineno}, column "
                                    f"{err.colno}; regenerate the dataset with `tireid synth --out DIR`",
                                    "SynthPEDES layout"))
        except UnicodeDecodeError:
            problems.append(Problem("error", f"{attributes} is not UTF-8 text; regenerate the dataset with "
                                    "`tireid synth --out DIR`", "SynthPEDES layout"))
    parts_dir = root / PARTS_DIR
    if not parts_dir.is_dir() or not records:
        return problems
    missing, broken, misfit = [], [], []
    for record in progress(records, desc="checking part maps", unit="map"):
        rel = part_map_relpath(record.path)
        part_map, image = parts_dir / rel, root / IMAGE_DIR / record.path
        if not part_map.is_file():
            missing.append(rel)
        elif full:
            reason = decode_error(part_map)
            if reason:
                broken.append(f"{rel} ({reason})")
            elif image.is_file() and decode_error(image) is None and _size(part_map) != _size(image):
                misfit.append(rel)
    fix = "regenerate the dataset with `tireid synth --out DIR`"
    if missing:
        problems.append(Problem("error", f"{len(missing)} of {len(records)} images have no part map in "
                                f"{parts_dir}/: {_first(missing)}; {fix}", "missing part maps"))
    if broken:
        problems.append(Problem("error", f"{len(broken)} part maps in {parts_dir}/ do not decode: "
                                f"{_first(broken)}; {fix}", "corrupt part maps"))
    if misfit:
        problems.append(Problem("warning", f"{len(misfit)} part maps in {parts_dir}/ differ in size from "
                                f"their image: {_first(misfit)}; {fix}", "part map size"))
    return problems


def parsing_problems(root: Path, records: list[ImageRecord], parsing_root: Path, full: bool) -> list[Problem]:
    """Human-parsing maps in ``parsing_root``: how many images have one, and each unusable map.

    A map is ``<parsing_root>/<image path with extension .png>``, a mode ``L``
    or ``P`` PNG at its image's size (mode and size are read from the headers);
    with ``full`` its pixels are decoded and every value must index
    ``PART_CLASSES``. An image without a map is fine (training uses the
    body-layout prior for it): the count is a note, or a warning when no image
    has one. A map that cannot be used is an error.
    """
    kind = "parsing maps"
    if not parsing_root.is_dir():
        return [Problem("error", f"parsing folder {parsing_root}/ not found; give the folder that mirrors "
                        f"{root / IMAGE_DIR}/ with one label PNG per image (see {SETUP_GUIDE})", kind)]
    missing: list[str] = []
    unusable: list[Problem] = []
    for record in progress(records, desc="checking parsing maps", unit="map"):
        rel = part_map_relpath(record.path)
        path = parsing_root / rel
        if not path.is_file():
            missing.append(rel)
            continue
        reason = label_map_error(path, _image_size_or_none(root / IMAGE_DIR / record.path), decode=full)
        if reason is not None:
            unusable.append(Problem("error", f"parsing map {reason}", "unusable parsing map"))
    problems: list[Problem] = []
    total = len(records)
    if records and len(missing) == total:
        problems.append(Problem("warning", f"none of the {total} images has a parsing map in {parsing_root}/ "
                                f"(the first would be {parsing_root / part_map_relpath(records[0].path)}); every "
                                "image falls back to the body-layout prior; put the maps under the images' "
                                "relative paths", kind))
    elif records:
        without = (f"; {len(missing)} without one use the body-layout prior: {_first(missing)}" if missing else "")
        problems.append(Problem("note", f"{total - len(missing)} of {total} images have a parsing map in "
                                f"{parsing_root}/{without}", kind))
    return unusable + problems


def convention_problems(fmt: DatasetFormat, root: Path, records: list[ImageRecord]) -> list[Problem]:
    """Notes on departures from a dataset's published conventions that do not stop the reader."""
    problems = []
    if fmt.name == "icfg-pedes" and any(r.split == "val" for r in records):
        problems.append(Problem("note", "entries with split 'val' found; ICFG-PEDES publishes train and "
                                "test only, they are read as a val split", "ICFG-PEDES val split"))
    if fmt.name == "cuhk-pedes" and (root / PARTS_DIR).is_dir() and (root / ATTRIBUTES_FILE).is_file():
        problems.append(Problem("note", f"{root} has {PARTS_DIR}/ and {ATTRIBUTES_FILE}: this looks like "
                                "SynthPEDES; --dataset synth also checks its part maps", "SynthPEDES root"))
    if fmt.name == "rstpreid":
        per_id: dict[tuple[str, int], int] = Counter((r.split, r.pid) for r in records)
        for split in SPLITS:
            odd = [(pid, n) for (s, pid), n in per_id.items() if s == split and n != RSTPREID_IMAGES_PER_ID]
            if odd:
                total = sum(1 for s, _ in per_id if s == split)
                pid, n = odd[0]
                problems.append(Problem("note", f"{split}: {len(odd)} of {total} identities do not have "
                                        f"{RSTPREID_IMAGES_PER_ID} images (e.g. id {pid} has {n}); RSTPReid "
                                        f"publishes {RSTPREID_IMAGES_PER_ID} per identity", "images per id"))
    return problems


def split_counts(fmt: DatasetFormat, records: list[ImageRecord]) -> dict[str, SplitCounts]:
    """Identities, images and captions per split: the dataset's splits, then any other present."""
    images: dict[str, int] = defaultdict(int)
    captions: dict[str, int] = defaultdict(int)
    ids: dict[str, set[int]] = defaultdict(set)
    for record in records:
        images[record.split] += 1
        captions[record.split] += len(record.captions)
        ids[record.split].add(record.pid)
    names = [s for s in SPLITS if s in fmt.splits or s in images]
    return {s: SplitCounts(len(ids[s]), images[s], captions[s]) for s in names}


def published_notes(fmt: DatasetFormat, splits: dict[str, SplitCounts]) -> list[Problem]:
    """One note per split whose counts differ from the published ones."""
    notes = []
    for split, known in PUBLISHED_COUNTS.get(fmt.name, {}).items():
        found = splits.get(split, SplitCounts(0, 0, 0))
        pairs = [(found.ids, known.ids), (found.images, known.images), (found.captions, known.captions)]
        if any(k is not None and f != k for f, k in pairs):
            notes.append(Problem("note", f"{split}: {found.ids:,} ids / {found.images:,} images / "
                                 f"{found.captions:,} captions, published "
                                 f"{' / '.join(_number(k) for _, k in pairs)} "
                                 "(fine if you meant a subset)", "published counts"))
    return notes


def limit_listed(problems: list[Problem], limit: int = MAX_LISTED) -> list[Problem]:
    """Most severe first; of each kind keep the first ``limit`` and one line counting the rest."""
    seen: Counter[str] = Counter()
    kept: list[Problem] = []
    hidden: dict[tuple[str, str], int] = {}
    for problem in problems:
        seen[problem.kind] += 1
        if not problem.kind or seen[problem.kind] <= limit:
            kept.append(problem)
        else:
            key = (problem.severity, problem.kind)
            hidden[key] = hidden.get(key, 0) + 1
    for (severity, kind), count in hidden.items():
        plural = "" if count == 1 else "s"
        kept.append(Problem(severity, f"{count} more {severity}{plural} of the kind '{kind}' not listed "
                            f"(the first {limit} are above)", kind))
    return sorted(kept, key=lambda p: SEVERITIES.index(p.severity))


def decode_error(path: Path) -> str | None:
    """None when PIL verifies and fully loads the image at ``path``, else the reason it fails."""
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()
    except Exception as err:  # PIL signals bad data with many exception types
        return f"{type(err).__name__}: {err}"
    return None


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``tireid check-data``."""
    parser.add_argument("--dataset", required=True, metavar="{" + ",".join(DATASETS) + "}",
                        help="the layout to expect")
    parser.add_argument("--root", required=True,
                        help="the dataset folder (holds the annotation file and imgs/)")
    parser.add_argument("--full", action="store_true", help="also decode every image (slower)")
    parser.add_argument("--parsing-root", metavar="DIR", default=None,
                        help="human-parsing maps mirroring imgs/ to check (default: ROOT/parsing when present)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.epilog = "Exit status: 0 when the root is usable, 1 when it is not."


def run(args: argparse.Namespace) -> int:
    """Check the root, print the table (or JSON), return 0 when usable and 1 when not."""
    report = check_dataset(args.dataset, args.root, full=args.full, parsing_root=args.parsing_root)
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else report.format())
    return 0 if report.usable else 1


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (", ..." if len(items) > MAX_LISTED else "")


def _misplaced_hint(root: Path, missing: list[str]) -> str:
    """Where the first missing image is, when it sits in a usual wrong place."""
    for folder in (root, root / IMAGE_DIR / IMAGE_DIR, root / "images"):
        if (folder / missing[0]).is_file():
            return f" ({missing[0]} is under {folder}/: move the images to {root / IMAGE_DIR}/)"
    return ""


def _image_size_or_none(path: Path) -> tuple[int, int] | None:
    """(height, width) from the image header, or None for a missing or unreadable image (reported elsewhere)."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except Exception:  # PIL signals bad data with many exception types
        return None


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
