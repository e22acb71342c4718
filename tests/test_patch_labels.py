"""Patch labels for semantic MIM (tireid_lite.data.patch_labels) and the parsing-map check of `tireid check-data`.

Expected labels are written out by hand or counted by a plain per-patch loop;
resizing is compared with PIL's nearest-neighbour resize.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tireid_lite.cli import main
from tireid_lite.data.checker import check_dataset
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.data.patch_labels import (
    LAYOUT_BANDS,
    ParsingMaps,
    label_map_error,
    layout_prior,
    load_synth_part_map,
    patch_labels,
    resize_part_map,
    synth_part_map_path,
)
from tireid_lite.data.readers import part_map_relpath, read_dataset
from tireid_lite.data.synth.materials import PART_CLASSES, PART_INDEX
from tireid_lite.errors import DatasetError

BG, HAIR, FACE, UPPER, LOWER, LEGS, SHOES, BAG = (
    PART_INDEX[n] for n in ("background", "hair", "face", "upper_clothes", "lower_clothes", "legs", "shoes", "bag")
)


def digits(rows: list[str]) -> np.ndarray:
    return np.array([[int(ch) for ch in row] for row in rows], dtype=np.uint8)


# A 16x8 part map = two 8x8 patches (one column).
# Top patch: 16 face (3) + 16 upper-clothes (4) + 1 bag (9) pixels, 33/64 non-background -> a tie of face
# and upper clothes, which goes to the lower index: face.
# Bottom patch: 20 legs (7) + 8 shoes (8) = 28/64 = 0.4375 non-background -> below coverage 0.5: background.
MAP_16x8 = digits([
    "00333300",
    "00333300",
    "00333300",
    "00333300",
    "44444444",
    "44444444",
    "90000000",
    "00000000",
    "00777700",
    "00777700",
    "00777700",
    "00777700",
    "00777700",
    "00888800",
    "00888800",
    "00000000",
])


def loop_patch_labels(part_map: np.ndarray, p: int, coverage: float) -> np.ndarray:
    """The rule written patch by patch with a Counter."""
    rows, cols = part_map.shape[0] // p, part_map.shape[1] // p
    out = np.zeros((rows, cols), dtype=np.int64)
    for r in range(rows):
        for c in range(cols):
            counts = Counter(int(v) for v in part_map[r * p:(r + 1) * p, c * p:(c + 1) * p].ravel() if v != 0)
            total = sum(counts.values())
            if total and total / (p * p) >= coverage:
                best = max(counts.values())
                out[r, c] = min(k for k, v in counts.items() if v == best)
    return out


# --- patch_labels -----------------------------------------------------------------------------


def test_patch_labels_by_hand_tie_and_below_coverage():
    assert MAP_16x8.shape == (16, 8)
    labels = patch_labels(MAP_16x8, 8)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [[FACE], [BG]])  # tie -> face (3 < 4); 0.4375 < 0.5 -> background


@pytest.mark.parametrize(
    ("coverage", "expected"),
    [(0.0, [[FACE], [LEGS]]), (0.4, [[FACE], [LEGS]]), (0.4375, [[FACE], [LEGS]]), (0.5, [[FACE], [BG]]),
     (33 / 64, [[FACE], [BG]]), (0.52, [[BG], [BG]]), (1.0, [[BG], [BG]])],
)
def test_patch_labels_coverage_threshold(coverage, expected):
    np.testing.assert_array_equal(patch_labels(MAP_16x8, 8, coverage=coverage), expected)


def test_patch_labels_on_small_patches_by_hand():
    part_map = digits([
        "0044",
        "0344",
        "5500",
        "5800",
    ])
    # patch (0,0): one face pixel of 4 (0.25 < 0.5) -> bg; (0,1): all upper; (1,0): 3 lower + 1 shoes -> lower;
    # (1,1): empty -> bg.
    np.testing.assert_array_equal(patch_labels(part_map, 2), [[BG, UPPER], [LOWER, BG]])
    np.testing.assert_array_equal(patch_labels(part_map, 2, coverage=0.25), [[FACE, UPPER], [LOWER, BG]])
    np.testing.assert_array_equal(patch_labels(part_map, 2, coverage=0.0), [[FACE, UPPER], [LOWER, BG]])


def test_patch_labels_batch_and_pil_input():
    batch = np.stack([MAP_16x8, MAP_16x8[::-1]])  # (2, 16, 8)
    labels = patch_labels(batch, 8)
    assert labels.shape == (2, 2, 1)
    np.testing.assert_array_equal(labels, [[[FACE], [BG]], [[BG], [FACE]]])
    np.testing.assert_array_equal(patch_labels(Image.fromarray(MAP_16x8), 8), [[FACE], [BG]])


def test_patch_labels_custom_background():
    part_map = np.full((4, 4), 4, dtype=np.int64)
    part_map[:2, :2] = 0
    # With 4 as background, class 0 is an ordinary class: only patch (0,0) has any, and it is full of it.
    np.testing.assert_array_equal(patch_labels(part_map, 2, background=4), [[0, 4], [4, 4]])


@pytest.mark.parametrize("coverage", [0.0, 0.3, 0.5, 0.9])
def test_patch_labels_match_a_loop_on_random_maps(coverage):
    rng = np.random.default_rng(7)
    part_map = rng.choice(len(PART_CLASSES), size=(24, 16), p=[0.5] + [0.5 / 9] * 9).astype(np.uint8)
    part_map[:8, :8] = rng.choice([0, 3, 4], size=(8, 8))  # few classes: ties and low coverage happen
    for p in (2, 4, 8):
        np.testing.assert_array_equal(patch_labels(part_map, p, coverage=coverage),
                                      loop_patch_labels(part_map, p, coverage))


@pytest.mark.parametrize(
    ("shape", "message"),
    [((20, 8), "part map height 20 is not a multiple of patch_size 8; resize the part map"),
     ((16, 12), "part map width 12 is not a multiple of patch_size 8"),
     ((20, 12), "part map height 20 and width 12 are not multiples of patch_size 8")],
)
def test_patch_labels_refuses_sizes_not_divisible(shape, message):
    with pytest.raises(ValueError, match=message) as caught:
        patch_labels(np.zeros(shape, dtype=np.uint8), 8)
    assert "resize_part_map" in str(caught.value)


def test_patch_labels_refuses_bad_input():
    with pytest.raises(ValueError, match="integer class indices"):
        patch_labels(np.zeros((8, 8), dtype=np.float32), 8)
    with pytest.raises(ValueError, match=r"\(H, W\) or \(B, H, W\)"):
        patch_labels(np.zeros((8, 8, 3), dtype=np.uint8)[None], 8)
    with pytest.raises(ValueError, match="coverage=1.5"):
        patch_labels(np.zeros((8, 8), dtype=np.uint8), 8, coverage=1.5)
    with pytest.raises(ValueError, match="negative label -1"):
        patch_labels(np.full((8, 8), -1), 8)


# --- resize_part_map --------------------------------------------------------------------------


def test_resize_part_map_by_hand():
    small = digits(["12", "34"])
    np.testing.assert_array_equal(resize_part_map(small, (4, 4)),
                                  digits(["1122", "1122", "3344", "3344"]))
    np.testing.assert_array_equal(resize_part_map(digits(["1122", "1122", "3344", "3344"]), (2, 2)), small)
    up = resize_part_map(MAP_16x8, (32, 16))
    assert up.dtype == np.uint8 and set(np.unique(up)) == set(np.unique(MAP_16x8))  # labels never blend
    np.testing.assert_array_equal(patch_labels(up, 16), [[FACE], [BG]])


@pytest.mark.parametrize(("src", "dst"), [((37, 13), (96, 32)), ((384, 128), (96, 32)), ((50, 20), (48, 16))])
def test_resize_part_map_matches_pil_nearest(src, dst):
    part_map = np.random.default_rng(0).integers(0, 10, size=src, dtype=np.uint8)
    pil = np.asarray(Image.fromarray(part_map).resize((dst[1], dst[0]), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(resize_part_map(part_map, dst), pil)
    batch = resize_part_map(np.stack([part_map, part_map]), dst)
    assert batch.shape == (2, *dst)
    np.testing.assert_array_equal(batch[1], pil)


# --- layout_prior -----------------------------------------------------------------------------


def test_layout_prior_by_hand():
    prior = layout_prior((100, 40))
    assert prior.shape == (100, 40) and prior.dtype == np.uint8
    assert set(np.unique(prior)) == {BG, HAIR, FACE, UPPER, LOWER, LEGS, SHOES}
    # The body column is the centred half: columns 10..29 (centres (x + 0.5) / 40 within 0.25..0.75).
    assert (prior[:, :10] == BG).all() and (prior[:, 30:] == BG).all()
    column = prior[:, 10]
    assert (prior[:, 10:30] == column[:, None]).all()
    # Row centres (y + 0.5) / 100 against the band edges 0.07, 0.15, 0.50, 0.80, 0.92.
    expected_rows = [HAIR] * 7 + [FACE] * 8 + [UPPER] * 35 + [LOWER] * 30 + [LEGS] * 12 + [SHOES] * 8
    np.testing.assert_array_equal(column, expected_rows)
    assert [name for name, _ in LAYOUT_BANDS] == ["hair", "face", "upper_clothes", "lower_clothes", "legs", "shoes"]


def test_layout_prior_at_a_model_size_and_its_patch_labels():
    prior = layout_prior((96, 32))
    labels = patch_labels(prior, 8)  # 12 x 4 patches
    assert labels.shape == (12, 4)
    assert (labels[:, [0, 3]] == BG).all()  # outside the body column
    # Band edges in pixel rows: 6.72, 14.4, 48, 76.8, 88.32, so row y is hair for y <= 6, face 7..13,
    # upper 14..47, lower 48..76, legs 77..87, shoes 88..95. Patch row 1 (rows 8..15): 6 face, 2 upper rows;
    # patch row 9 (rows 72..79): 5 lower, 3 legs rows.
    np.testing.assert_array_equal(labels[:, 1], [HAIR, FACE, UPPER, UPPER, UPPER, UPPER, LOWER, LOWER, LOWER,
                                                 LOWER, LEGS, SHOES])
    np.testing.assert_array_equal(labels[:, 2], labels[:, 1])
    with pytest.raises(ValueError, match="column=0"):
        layout_prior((96, 32), column=0.0)


# --- ParsingMaps ------------------------------------------------------------------------------


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def parsed_root(tmp_path) -> Path:
    """imgs/ with three 16x8 images (one jpg); parsing/ holds maps for two of them."""
    root = tmp_path / "data"
    for rel in ("cam_a/001.png", "cam_a/002.jpg", "cam_b/003.png"):
        write_png(root / "imgs" / rel, np.full((16, 8, 3), 120, dtype=np.uint8))
    write_png(root / "parsing" / "cam_a" / "001.png", MAP_16x8)
    write_png(root / "parsing" / "cam_a" / "002.png", MAP_16x8[::-1].copy())  # the jpg's map is a png
    return root


def test_parsing_maps_present(parsed_root):
    maps = ParsingMaps(parsed_root / "parsing", image_dir=parsed_root / "imgs")
    assert maps.path("cam_a/002.jpg") == parsed_root / "parsing" / "cam_a" / "002.png"
    assert maps.has_map("cam_a/001.png") and not maps.has_map("cam_b/003.png")
    loaded = maps.load("cam_a/001.png")
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, MAP_16x8)
    np.testing.assert_array_equal(maps.load("cam_a/002.jpg"), MAP_16x8[::-1])
    np.testing.assert_array_equal(maps.load("cam_a/001.png", size=(32, 16)),
                                  np.repeat(np.repeat(MAP_16x8, 2, axis=0), 2, axis=1))


def test_parsing_maps_palette_png_is_read_as_indices(parsed_root):
    image = Image.frombytes("P", (8, 16), MAP_16x8.tobytes())
    image.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    image.save(parsed_root / "parsing" / "cam_a" / "001.png")
    maps = ParsingMaps(parsed_root / "parsing", image_dir=parsed_root / "imgs")
    np.testing.assert_array_equal(maps.load("cam_a/001.png"), MAP_16x8)


def test_parsing_maps_absent_falls_back_to_the_prior(parsed_root):
    maps = ParsingMaps(parsed_root / "parsing", image_dir=parsed_root / "imgs")
    np.testing.assert_array_equal(maps.load("cam_b/003.png", size=(96, 32)), layout_prior((96, 32)))
    np.testing.assert_array_equal(maps.load("cam_b/003.png"), layout_prior((16, 8)))  # the image's size
    no_folder = ParsingMaps(parsed_root / "absent")
    np.testing.assert_array_equal(no_folder.load("cam_a/001.png", size=(48, 16)), layout_prior((48, 16)))
    with pytest.raises(ValueError, match="pass size=\\(H, W\\) or build ParsingMaps with image_dir"):
        no_folder.load("cam_a/001.png")


def test_parsing_maps_without_fallback_name_the_missing_file(parsed_root):
    maps = ParsingMaps(parsed_root / "parsing", image_dir=parsed_root / "imgs", fallback=False)
    missing = parsed_root / "parsing" / "cam_b" / "003.png"
    with pytest.raises(DatasetError, match=f"no part map {missing} for image cam_b/003.png; write the parser's"):
        maps.load("cam_b/003.png", size=(16, 8))


def test_parsing_map_of_the_wrong_size_is_an_error_naming_the_file(parsed_root):
    bad = write_png(parsed_root / "parsing" / "cam_a" / "001.png", MAP_16x8[:8])
    maps = ParsingMaps(parsed_root / "parsing", image_dir=parsed_root / "imgs")
    with pytest.raises(DatasetError) as caught:
        maps.load("cam_a/001.png", size=(16, 8))
    assert str(caught.value) == (f"part map {bad} is 8x8 (height x width) but its image is 16x8; write the map "
                                 "at the size of its image")


def test_parsing_map_of_the_wrong_mode_or_classes_is_an_error(parsed_root):
    maps = ParsingMaps(parsed_root / "parsing", image_dir=parsed_root / "imgs")
    rgb = write_png(parsed_root / "parsing" / "cam_a" / "001.png", np.zeros((16, 8, 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match=f"part map {rgb} has PIL mode 'RGB'; save it as a single-channel PNG"):
        maps.load("cam_a/001.png")
    lip_labels = MAP_16x8.copy()
    lip_labels[0, 0] = 14  # e.g. a LIP parser's label left unmapped
    write_png(parsed_root / "parsing" / "cam_a" / "001.png", lip_labels)
    with pytest.raises(DatasetError, match="holds class 14 but the kit has 10 part classes .*remap the parser"):
        maps.load("cam_a/001.png")


def test_label_map_error_checks_headers_without_decoding(parsed_root):
    path = parsed_root / "parsing" / "cam_a" / "001.png"
    assert label_map_error(path, (16, 8)) is None
    assert label_map_error(path, (32, 8)).startswith(f"{path} is 16x8 (height x width)")
    lip_labels = MAP_16x8.copy()
    lip_labels[3, 3] = 19
    write_png(path, lip_labels)
    assert label_map_error(path, (16, 8), decode=False) is None  # class range needs the pixels
    assert "holds class 19" in label_map_error(path, (16, 8))


# --- SynthPEDES part maps ---------------------------------------------------------------------


def test_synth_part_map_path_and_loader(tmp_path):
    rel = "train/0001/0001_00.png"
    assert synth_part_map_path(tmp_path, rel) == tmp_path / "parts" / "train" / "0001" / "0001_00.png"
    write_png(tmp_path / "imgs" / rel, np.zeros((16, 8, 3), dtype=np.uint8))
    write_png(synth_part_map_path(tmp_path, rel), MAP_16x8)
    np.testing.assert_array_equal(load_synth_part_map(tmp_path, rel), MAP_16x8)
    np.testing.assert_array_equal(load_synth_part_map(tmp_path, rel, size=(8, 4)),
                                  MAP_16x8[1::2, 1::2])  # halving keeps the pixel nearest each centre: odd ones
    with pytest.raises(DatasetError, match="no part map .*; regenerate the dataset with `tireid synth --out DIR`"):
        load_synth_part_map(tmp_path, "train/0001/0001_01.png", size=(16, 8))


def test_for_dataset_picks_parts_for_synth_and_parsing_otherwise(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    dataset = read_dataset("cuhk-pedes", root)
    maps = ParsingMaps.for_dataset(dataset)
    assert maps.root == root / "parsing" and maps.image_dir == root / "imgs" and maps.fallback
    dataset.name = "synth"
    assert ParsingMaps.for_dataset(dataset).root == root / "parts"
    with pytest.raises(DatasetError, match=f"parsing folder {tmp_path / 'nowhere'} not found"):
        ParsingMaps.for_dataset(dataset, tmp_path / "nowhere")


# --- tireid check-data with parsing maps ------------------------------------------------------


def fixture_with_parsing(tmp_path: Path, skip: int = 0) -> tuple[Path, list[str]]:
    """A CUHK-PEDES fixture whose parsing/ holds a map (at the image's size) for all but the first ``skip``."""
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    rels = [e["file_path"] for e in json.loads((root / "reid_raw.json").read_text(encoding="utf-8"))]
    for rel in rels[skip:]:
        with Image.open(root / "imgs" / rel) as image:
            width, height = image.size
        write_png(root / "parsing" / part_map_relpath(rel), layout_prior((height, width)))
    return root, rels


def parsing_findings(report) -> list[tuple[str, str]]:
    return [(p.severity, p.message) for p in report.problems if "parsing" in p.message]


def test_check_data_counts_parsing_maps(tmp_path):
    root, rels = fixture_with_parsing(tmp_path, skip=2)
    report = check_dataset("cuhk-pedes", root, full=True)
    assert report.usable
    missing = ", ".join(part_map_relpath(r) for r in rels[:2])
    assert parsing_findings(report) == [
        ("note", f"14 of 16 images have a parsing map in {root / 'parsing'}/; 2 without one use the body-layout "
                 f"prior: {missing}")]


def test_check_data_flags_wrong_size_and_mode(tmp_path, capsys):
    root, rels = fixture_with_parsing(tmp_path)
    small = write_png(root / "parsing" / part_map_relpath(rels[3]), np.zeros((4, 4), dtype=np.uint8))
    rgb = write_png(root / "parsing" / part_map_relpath(rels[5]), np.zeros((4, 4, 3), dtype=np.uint8))
    with Image.open(root / "imgs" / rels[3]) as image:
        width, height = image.size
    report = check_dataset("cuhk-pedes", root)
    assert not report.usable
    errors = [m for s, m in parsing_findings(report) if s == "error"]
    assert errors == [
        f"parsing map {small} is 4x4 (height x width) but its image is {height}x{width}; write the map at the "
        "size of its image",
        f"parsing map {rgb} has PIL mode 'RGB'; save it as a single-channel PNG (mode 'L' or 'P') whose values "
        "index PART_CLASSES, not a colour-coded picture",
    ]
    assert ("note", f"16 of 16 images have a parsing map in {root / 'parsing'}/") in parsing_findings(report)
    status = main(["check-data", "--dataset", "cuhk-pedes", "--root", str(root)])
    assert status == 1 and f"error: parsing map {small} is 4x4" in capsys.readouterr().out


def test_check_data_parsing_root_option(tmp_path, capsys):
    root, rels = fixture_with_parsing(tmp_path)
    moved = tmp_path / "maps"
    (root / "parsing").rename(moved)
    assert parsing_findings(check_dataset("cuhk-pedes", root)) == []  # no parsing/ and none asked for
    status = main(["check-data", "--dataset", "cuhk-pedes", "--root", str(root), "--parsing-root", str(moved),
                   "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert {"severity": "note", "message": f"16 of 16 images have a parsing map in {moved}/"} in report["problems"]
    absent = check_dataset("cuhk-pedes", root, parsing_root=tmp_path / "absent")
    assert parsing_findings(absent)[0] == (
        "error", f"parsing folder {tmp_path / 'absent'}/ not found; give the folder that mirrors {root / 'imgs'}/ "
                 "with one label PNG per image (see data_setup/README.md)")


def test_check_data_warns_when_no_image_has_a_map(tmp_path):
    root, rels = fixture_with_parsing(tmp_path, skip=16)
    (root / "parsing").mkdir()
    (root / "parsing" / "stray.png").write_bytes(b"")
    report = check_dataset("cuhk-pedes", root)
    assert report.usable
    ((severity, message),) = parsing_findings(report)
    assert severity == "warning"
    assert message.startswith(f"none of the 16 images has a parsing map in {root / 'parsing'}/ (the first would be "
                              f"{root / 'parsing' / part_map_relpath(rels[0])})")
