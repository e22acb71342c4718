"""Native readers (tireid_lite.data.readers) and native-format fixtures (tireid_lite.data.fixtures)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tireid_lite.data.fixtures import (
    BREAK_KINDS,
    COLOURS,
    FIXTURE_DATASETS,
    Person,
    break_fixture,
    describe,
    draw_pedestrian,
    dump_entries,
    tokenize_caption,
    write_fixture,
)
from tireid_lite.data.readers import (
    DATASETS,
    part_map_relpath,
    read_cuhk_pedes,
    read_dataset,
    read_icfg_pedes,
    read_rstpreid,
    read_synth,
)
from tireid_lite.data.records import EvalSet, TrainPair
from tireid_lite.errors import ConfigError, DatasetError

ANNOTATION = {"cuhk-pedes": "reid_raw.json", "icfg-pedes": "ICFG-PEDES.json", "rstpreid": "data_captions.json"}
PATH_FIELD = {"cuhk-pedes": "file_path", "icfg-pedes": "file_path", "rstpreid": "img_path"}
PATH_PATTERN = {
    "cuhk-pedes": r"(CUHK01/\d{7}\.png|Market/\d{4}_c\ds1_\d{6}_00\.jpg"
                  r"|(train|test)_query/p\d+_s\d+\.jpg|cam_[ab]/\d{3}_\d+\.png)",
    "icfg-pedes": r"(train|test)/(\d{4})/\2_\d{3}_\d{2}_0303(morning|noon|afternoon)_\d{4}_\d\.jpg",
    "rstpreid": r"\d{4}_c\d{2}_\d{4}\.jpg",
}

# A CUHK-PEDES file written by hand: splits interleaved, train ids 5 and 3 out of order.
HAND_ENTRIES = [
    {"split": "train", "captions": ["A man in a red coat.", "Red coat, black shoes."],
     "file_path": "CUHK01/0005001.png", "processed_tokens": [["a"], ["red"]], "id": 5},
    {"split": "test", "captions": ["A woman with a blue skirt."],
     "file_path": "cam_a/001_45.png", "processed_tokens": [["a"]], "id": 12},
    {"split": "train", "captions": ["A man in green trousers."],
     "file_path": "Market/0003_c1s1_001051_00.jpg", "processed_tokens": [["a"]], "id": 3},
    {"split": "val", "captions": ["A lady with a backpack."],
     "file_path": "train_query/p10007_s20049.jpg", "processed_tokens": [["a"]], "id": 9},
    {"split": "test", "captions": ["The woman wears a blue skirt.", "Blue skirt, white top."],
     "file_path": "cam_b/001_45.png", "processed_tokens": [["the"], ["blue"]], "id": 12},
    {"split": "test", "captions": ["A man in black."],
     "file_path": "test_query/p10010_s20070.jpg", "processed_tokens": [["a"]], "id": 13},
    {"split": "train", "captions": ["The man in the red coat again."],
     "file_path": "CUHK01/0005002.png", "processed_tokens": [["the"]], "id": 5},
]


def write_hand_root(root: Path, entries: list, annotation: str = "reid_raw.json") -> Path:
    """An annotation file and an empty imgs/ folder: readers never open images."""
    root.mkdir()
    (root / "imgs").mkdir()
    (root / annotation).write_text(json.dumps(entries), encoding="utf-8")
    return root


def make_synth_layout(root: Path) -> Path:
    """A CUHK-PEDES fixture plus the SynthPEDES extras: parts/ maps and attributes.json."""
    write_fixture("cuhk-pedes", root)
    for entry in json.loads((root / "reid_raw.json").read_text()):
        target = root / "parts" / part_map_relpath(entry["file_path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((48, 16), dtype=np.uint8)).save(target)
    (root / "attributes.json").write_text("{}", encoding="utf-8")
    return root


# --- readers on hand-written files ----------------------------------------------------------


def test_hand_written_cuhk_keeps_file_order_and_splits(tmp_path):
    data = read_cuhk_pedes(write_hand_root(tmp_path / "cuhk", HAND_ENTRIES))
    assert data.name == "cuhk-pedes"
    assert data.image_dir == tmp_path / "cuhk" / "imgs"
    assert [r.path for r in data.records] == [e["file_path"] for e in HAND_ENTRIES]
    assert [r.path for r in data.split("train")] == [
        "CUHK01/0005001.png", "Market/0003_c1s1_001051_00.jpg", "CUHK01/0005002.png"]
    assert [r.pid for r in data.split("test")] == [12, 12, 13]
    assert data.records[4].captions == ("The woman wears a blue skirt.", "Blue skirt, white top.")
    assert data.image_path("cam_a/001_45.png") == tmp_path / "cuhk" / "imgs" / "cam_a" / "001_45.png"


def test_hand_written_cuhk_train_pairs_remap_ids(tmp_path):
    data = read_dataset("cuhk-pedes", write_hand_root(tmp_path / "cuhk", HAND_ENTRIES))
    # ids 3 and 5 -> 0 and 1 (sorted); image_id counts the split's images in file order
    assert data.train_pairs() == [
        TrainPair(0, 1, 0, "CUHK01/0005001.png", "A man in a red coat."),
        TrainPair(1, 1, 0, "CUHK01/0005001.png", "Red coat, black shoes."),
        TrainPair(2, 0, 1, "Market/0003_c1s1_001051_00.jpg", "A man in green trousers."),
        TrainPair(3, 1, 2, "CUHK01/0005002.png", "The man in the red coat again."),
    ]


def test_hand_written_cuhk_eval_set(tmp_path):
    data = read_dataset("cuhk-pedes", write_hand_root(tmp_path / "cuhk", HAND_ENTRIES))
    assert data.eval_set("test") == EvalSet(
        gallery_paths=["cam_a/001_45.png", "cam_b/001_45.png", "test_query/p10010_s20070.jpg"],
        gallery_pids=[12, 12, 13],
        query_captions=["A woman with a blue skirt.", "The woman wears a blue skirt.",
                        "Blue skirt, white top.", "A man in black."],
        query_pids=[12, 12, 12, 13],
        query_image_ids=[0, 1, 1, 2],
    )
    assert data.eval_set("val").gallery_pids == [9]


def test_hand_written_rstpreid_uses_img_path(tmp_path):
    entries = [
        {"id": 0, "img_path": "0000_c14_0031.jpg", "captions": ["One.", "Two."], "split": "train"},
        {"id": 7, "img_path": "0007_c02_0131.jpg", "captions": ["Three.", "Four."], "split": "test"},
    ]
    data = read_rstpreid(write_hand_root(tmp_path / "rstp", entries, "data_captions.json"))
    assert [(r.path, r.pid, r.split) for r in data.records] == [
        ("0000_c14_0031.jpg", 0, "train"), ("0007_c02_0131.jpg", 7, "test")]
    assert data.eval_set("test").query_captions == ["Three.", "Four."]


def test_hand_written_icfg_has_no_val(tmp_path):
    entries = [{"split": "train", "captions": ["x y."], "file_path": "train/0001/a.jpg", "id": 0},
               {"split": "test", "captions": ["y z."], "file_path": "test/0001/b.jpg", "id": 1}]
    data = read_icfg_pedes(write_hand_root(tmp_path / "icfg", entries, "ICFG-PEDES.json"))
    assert data.has_split("train") and data.has_split("test") and not data.has_split("val")


# --- readers on fixtures ----------------------------------------------------------------------


@pytest.mark.parametrize("dataset", FIXTURE_DATASETS)
def test_fixture_reads_back_with_expected_counts(tmp_path, dataset):
    splits = {"train": 3, "test": 2} if dataset == "icfg-pedes" else {"train": 3, "val": 1, "test": 2}
    root = write_fixture(dataset, tmp_path / dataset, ids_per_split=splits, images_per_id=3)
    data = read_dataset(dataset, root)
    captions_per_image = 1 if dataset == "icfg-pedes" else 2
    for split, ids in splits.items():
        images = data.split(split)
        assert len(images) == ids * 3
        assert len({r.pid for r in images}) == ids
        assert all(len(r.captions) == captions_per_image for r in images)
    pairs = data.train_pairs()
    assert len(pairs) == 3 * 3 * captions_per_image
    assert sorted({p.pid for p in pairs}) == [0, 1, 2]


@pytest.mark.parametrize("dataset", FIXTURE_DATASETS)
def test_fixture_matches_its_json_read_independently(tmp_path, dataset):
    root = write_fixture(dataset, tmp_path / dataset)
    entries = json.loads((root / ANNOTATION[dataset]).read_text(encoding="utf-8"))
    field = PATH_FIELD[dataset]
    data = read_dataset(dataset, root)
    test = [e for e in entries if e["split"] == "test"]
    expected_queries = [c for e in test for c in e["captions"]]
    expected_image_ids = [i for i, e in enumerate(test) for _ in e["captions"]]
    evaluation = data.eval_set("test")
    assert evaluation.gallery_paths == [e[field] for e in test]
    assert evaluation.gallery_pids == [e["id"] for e in test]
    assert evaluation.query_captions == expected_queries
    assert evaluation.query_image_ids == expected_image_ids
    train = [e for e in entries if e["split"] == "train"]
    ranks = {pid: rank for rank, pid in enumerate(sorted({e["id"] for e in train}))}
    assert [(p.pid, p.path, p.caption) for p in data.train_pairs()] == [
        (ranks[e["id"]], e[field], c) for e in train for c in e["captions"]]


@pytest.mark.parametrize("dataset", FIXTURE_DATASETS)
def test_fixture_native_fields_paths_and_ids(tmp_path, dataset):
    root = write_fixture(dataset, tmp_path / dataset)
    entries = json.loads((root / ANNOTATION[dataset]).read_text(encoding="utf-8"))
    field = PATH_FIELD[dataset]
    expected_keys = ({"id", "img_path", "captions", "split"} if dataset == "rstpreid"
                     else {"split", "captions", "file_path", "processed_tokens", "id"})
    assert all(set(e) == expected_keys for e in entries)
    assert all(re.fullmatch(PATH_PATTERN[dataset], e[field]) for e in entries)
    assert len({e[field] for e in entries}) == len(entries)
    first = 1 if dataset == "cuhk-pedes" else 0  # CUHK-PEDES counts identities from 1
    n_ids = 6 if dataset == "icfg-pedes" else 8  # the default 4 train + 2 (val) + 2 test identities
    assert sorted({e["id"] for e in entries}) == list(range(first, first + n_ids))
    assert {e["split"] for e in entries} == ({"train", "test"} if dataset == "icfg-pedes" else {"train", "val", "test"})


@pytest.mark.parametrize("dataset", ["cuhk-pedes", "icfg-pedes"])
def test_fixture_processed_tokens_are_the_caption_words(tmp_path, dataset):
    root = write_fixture(dataset, tmp_path / dataset)
    for entry in json.loads((root / ANNOTATION[dataset]).read_text(encoding="utf-8")):
        words = [[w.strip(".,;") for w in c.lower().split()] for c in entry["captions"]]
        assert entry["processed_tokens"] == words


@pytest.mark.parametrize("dataset", FIXTURE_DATASETS)
def test_fixture_images_are_real_files_of_the_given_size(tmp_path, dataset):
    root = write_fixture(dataset, tmp_path / dataset, size=(48, 16))
    data = read_dataset(dataset, root)
    for record in data.records:
        with Image.open(data.image_path(record.path)) as image:
            image.load()
            assert image.size == (16, 48)  # PIL: (width, height)
            assert image.format == ("PNG" if record.path.endswith(".png") else "JPEG")


def test_fixture_is_deterministic_for_a_seed(tmp_path):
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a = files(write_fixture("rstpreid", tmp_path / "a", seed=3))
    b = files(write_fixture("rstpreid", tmp_path / "b", seed=3))
    c = files(write_fixture("rstpreid", tmp_path / "c", seed=4))
    assert a == b
    assert a["data_captions.json"] != c["data_captions.json"]


def test_fixture_annotation_has_one_entry_per_line(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    lines = (root / "reid_raw.json").read_text(encoding="utf-8").splitlines()
    entries = json.loads((root / "reid_raw.json").read_text(encoding="utf-8"))
    assert lines[0] == "[" and lines[-1] == "]"
    assert json.loads(lines[2].rstrip(",")) == entries[1]  # line 3 of the file holds entry 1
    assert dump_entries([{"a": 1}, {"b": "é"}]) == '[\n{"a": 1},\n{"b": "é"}\n]\n'


def test_write_fixture_accepts_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    root = write_fixture("icfg-pedes", tmp_path / "empty")
    assert (root / "ICFG-PEDES.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no staging folder left behind


def test_write_fixture_refuses_a_non_empty_folder_and_changes_nothing(tmp_path):
    root = tmp_path / "taken"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match=r"taken already exists and is not an empty folder.*new or empty"):
        write_fixture("cuhk-pedes", root)
    assert [p.name for p in root.iterdir()] == ["notes.txt"]
    assert (root / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="not an empty folder"):
        write_fixture("cuhk-pedes", tmp_path / "file")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"dataset": "synth"}, "tireid synth"),
        ({"dataset": "market"}, "cuhk-pedes, icfg-pedes, rstpreid"),
        ({"dataset": "icfg-pedes", "ids_per_split": {"val": 1}}, r"'val'.*train, test"),
        ({"dataset": "cuhk-pedes", "ids_per_split": 0}, "no identities"),
        ({"dataset": "cuhk-pedes", "ids_per_split": {"train": -1}}, r"ids_per_split\['train'\]"),
        ({"dataset": "cuhk-pedes", "images_per_id": 0}, "images_per_id must be an integer >= 1"),
        ({"dataset": "cuhk-pedes", "size": (48,)}, r"\(height, width\)"),
        ({"dataset": "cuhk-pedes", "size": (4, 16)}, ">= 8"),
    ],
)
def test_write_fixture_rejects_bad_arguments(tmp_path, kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        write_fixture(root=tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


# --- drawing and captions ---------------------------------------------------------------------

PERSON = Person(gender="woman", hair_length="long", hair_colour="brown", top="jacket", top_colour="red",
                bottom="skirt", bottom_colour="orange", shoes="boots", shoes_colour="black",
                bag="backpack", bag_colour="blue")


def test_describe_fills_each_template_grammatically():
    rng = np.random.default_rng(0)
    captions = [describe(PERSON, t, rng) for t in range(4)]
    nouns = r"(woman|lady|female pedestrian)"
    assert re.fullmatch(rf"A {nouns} with long brown hair is wearing a red jacket and an orange skirt\. "
                        r"She has black boots on and carries a blue backpack\.", captions[0])
    assert re.fullmatch(rf"The {nouns} is dressed in a red jacket with an orange skirt and a pair of "
                        r"black boots\. She is carrying a blue backpack\.", captions[1])
    assert re.fullmatch(rf"This {nouns} has long brown hair and wears an orange skirt with a red jacket\. "
                        r"She is also wearing black boots and carries a blue backpack\.", captions[2])
    assert re.fullmatch(rf"A {nouns} in a red jacket, an orange skirt and black boots, with a blue backpack\. "
                        r"Her hair is long and brown\.", captions[3])


def test_tokenize_caption_keeps_words_and_drops_punctuation():
    assert tokenize_caption("A lady in a T-shirt, red shoes.") == ["a", "lady", "in", "a", "t-shirt", "red", "shoes"]


def test_draw_pedestrian_paints_the_described_colours():
    image = draw_pedestrian(PERSON, (96, 32), np.random.default_rng(1))
    assert image.shape == (96, 32, 3) and image.dtype == np.uint8
    torso = image[int(0.4 * 96), 16].astype(int)  # middle of the torso
    shoe = image[int(0.94 * 96), 16 - 5].astype(int)
    palette = {name: np.array(rgb) for name, rgb in COLOURS.items()}
    nearest = lambda pixel: min(palette, key=lambda n: np.abs(palette[n] - pixel).sum())  # noqa: E731
    assert nearest(torso) == "red"
    assert nearest(shoe) == "black"


def test_part_map_relpath_swaps_the_extension_only():
    assert part_map_relpath("CUHK01/0363004.png") == "CUHK01/0363004.png"
    assert part_map_relpath("Market/0001_c1s1_001051_00.jpg") == "Market/0001_c1s1_001051_00.png"


# --- synth ------------------------------------------------------------------------------------


def test_read_synth_reads_the_cuhk_layout_with_parts(tmp_path):
    root = make_synth_layout(tmp_path / "synth")
    data = read_synth(root)
    assert data.name == "synth"
    assert [r.path for r in data.records] == [r.path for r in read_cuhk_pedes(root).records]


@pytest.mark.parametrize("remove", ["parts", "attributes.json"])
def test_read_synth_needs_parts_and_attributes(tmp_path, remove):
    root = make_synth_layout(tmp_path / "synth")
    target = root / remove
    if target.is_dir():
        for p in sorted(target.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DatasetError, match=rf"{re.escape(str(target))}/? not found.*tireid synth --out DIR"):
        read_synth(root)


# --- one clear error per bad input ------------------------------------------------------------

STRUCTURAL_BREAKS = {
    "missing-field": [r"field 'id' missing", r"needs split, captions, \w+, id"],
    "wrong-type": [r"field 'captions' is the string '.*', expected a list of strings", r"wrap the caption"],
    "empty-caption": [r"caption 0 is empty", r"write the caption or remove it"],
    "duplicate-path": [r"same image path as entry 0", r"merge their captions"],
    "non-integer-id": [r"field 'id' is the string '\d+', expected an integer", r"JSON number, e\.g\. \d+"],
}


@pytest.mark.parametrize("dataset", FIXTURE_DATASETS)
@pytest.mark.parametrize("kind", sorted(STRUCTURAL_BREAKS))
def test_reader_names_file_entry_path_and_fix(tmp_path, dataset, kind):
    root = write_fixture(dataset, tmp_path / dataset)
    entries = json.loads((root / ANNOTATION[dataset]).read_text(encoding="utf-8"))
    path = entries[0 if kind == "duplicate-path" else 1][PATH_FIELD[dataset]]
    break_fixture(root, dataset, kind)
    with pytest.raises(DatasetError) as caught:
        read_dataset(dataset, root)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{root / ANNOTATION[dataset]}: entry 1 ({PATH_FIELD[dataset]} {path!r}): ")
    for pattern in STRUCTURAL_BREAKS[kind]:
        assert re.search(pattern, message), (pattern, message)


def test_reader_reports_json_line_and_column(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    break_fixture(root, "cuhk-pedes", "malformed-json")  # drops the comma closing line 2
    with pytest.raises(DatasetError, match=re.escape(
            f"{root / 'reid_raw.json'} is not valid JSON: Expecting ',' delimiter at line 3, column 1; fix")):
        read_cuhk_pedes(root)


def test_reader_stops_at_the_first_fatal_problem(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    break_fixture(root, "cuhk-pedes", "empty-caption", entry=4)
    break_fixture(root, "cuhk-pedes", "missing-field", entry=2)
    with pytest.raises(DatasetError, match=r"entry 2 .*field 'id' missing") as caught:
        read_cuhk_pedes(root)
    assert "entry 4" not in str(caught.value)


@pytest.mark.parametrize("kind", ["missing-image", "corrupt-image", "non-ascii-caption"])
def test_reader_does_not_open_images_nor_fail_on_warnings(tmp_path, kind):
    root = write_fixture("rstpreid", tmp_path / "rstp")
    break_fixture(root, "rstpreid", kind)
    assert len(read_rstpreid(root).records) == 16


def test_reader_explains_the_icfg_name_mixup(tmp_path):
    root = write_fixture("icfg-pedes", tmp_path / "icfg")
    break_fixture(root, "icfg-pedes", "icfg-name-mixup")
    with pytest.raises(DatasetError, match=r"ICFG_PEDES\.json found: the reader expects ICFG-PEDES\.json "
                                           r".*rename it to ICFG-PEDES\.json"):
        read_icfg_pedes(root)


def test_reader_explains_caption_all_without_reid_raw(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    break_fixture(root, "cuhk-pedes", "caption-all-only")
    with pytest.raises(DatasetError) as caught:
        read_cuhk_pedes(root)
    message = str(caught.value)
    assert "caption_all.json found" in message and "needs reid_raw.json" in message
    assert "ShuangLI59/Person-Search-with-Natural-Language-Description" in message
    assert f"save it as {root / 'reid_raw.json'}" in message


@pytest.mark.parametrize(
    ("other", "dataset", "advice"),
    [("rstpreid", "cuhk-pedes", "this looks like RSTPReid; use --dataset rstpreid"),
     ("cuhk-pedes", "icfg-pedes", "this looks like CUHK-PEDES; use --dataset cuhk-pedes"),
     ("icfg-pedes", "rstpreid", "this looks like ICFG-PEDES; use --dataset icfg-pedes")],
)
def test_reader_recognises_another_dataset(tmp_path, other, dataset, advice):
    root = write_fixture(other, tmp_path / other)
    with pytest.raises(DatasetError, match=re.escape(advice)):
        read_dataset(dataset, root)


def test_reader_recognises_a_root_one_level_too_high(tmp_path):
    write_fixture("rstpreid", tmp_path / "RSTPReid")
    with pytest.raises(DatasetError, match=re.escape(f"point the root at {tmp_path / 'RSTPReid'}")):
        read_rstpreid(tmp_path)


def test_reader_unknown_name_lists_the_valid_ones(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'cuhk'; use one of "
                                           "cuhk-pedes, icfg-pedes, rstpreid, synth"):
        read_dataset("cuhk", tmp_path)
    assert DATASETS == ("cuhk-pedes", "icfg-pedes", "rstpreid", "synth")


def test_reader_root_missing_or_a_file(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere does not exist; pass the folder that holds reid_raw\.json"):
        read_cuhk_pedes(tmp_path / "nowhere")
    (tmp_path / "reid_raw.json").write_text("[]")
    with pytest.raises(DatasetError, match=r"reid_raw\.json is a file, not a folder"):
        read_cuhk_pedes(tmp_path / "reid_raw.json")


def test_reader_needs_the_image_folder(tmp_path):
    root = tmp_path / "cuhk"
    root.mkdir()
    (root / "reid_raw.json").write_text(json.dumps(HAND_ENTRIES))
    with pytest.raises(DatasetError, match=rf"{re.escape(str(root / 'imgs'))}/ not found; .*"
                                           r"e\.g\. .*imgs/CUHK01/0363004\.png"):
        read_cuhk_pedes(root)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ('{"annotations": []}', r"holds a JSON object, expected a list with one object per image"),
        ("[]", r"holds an empty list"),
        ("", r"not valid JSON: Expecting value at line 1, column 1"),
        ('[["train"]]', r"entry 0 is a JSON array, expected an object with fields split, captions"),
        ('[{"split": "query", "captions": ["a."], "file_path": "a.jpg", "id": 1}]',
         r"entry 0 \(file_path 'a\.jpg'\): field 'split' is 'query', expected one of 'train', 'val', 'test'"),
        ('[{"split": "train", "captions": ["a."], "file_path": "/data/a.jpg", "id": 1}]',
         r"field 'file_path' must be relative to .*imgs/"),
        ('[{"split": "train", "captions": ["a."], "file_path": "../a.jpg", "id": 1}]',
         r"must be relative to .*no leading '/', drive or '\.\.'"),
        ('[{"split": "train", "captions": ["a."], "file_path": 7, "id": 1}]',
         r"field 'file_path' is the integer 7, expected an image path relative to"),
        ('[{"split": "train", "captions": [], "file_path": "a.jpg", "id": 1}]',
         r"field 'captions' is an empty list; add the image's captions or remove the entry"),
        ('[{"split": "train", "captions": ["a.", 3], "file_path": "a.jpg", "id": 1}]',
         r"caption 1 is the integer 3, expected a string"),
        ('[{"split": "train", "captions": ["a."], "file_path": "a.jpg", "id": 1.5}]',
         r"field 'id' is the number 1\.5, expected an integer"),
        ('[{"split": "train", "captions": ["a."], "file_path": "a.jpg", "id": true}]',
         r"field 'id' is the boolean True, expected an integer"),
        ('[{"captions": ["a."], "file_path": "a.jpg"}]', r"fields 'split', 'id' missing"),
    ],
)
def test_reader_rejects_malformed_structure(tmp_path, content, pattern):
    root = tmp_path / "cuhk"
    (root / "imgs").mkdir(parents=True)
    (root / "reid_raw.json").write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=pattern) as caught:
        read_cuhk_pedes(root)
    assert str(root / "reid_raw.json") in str(caught.value)


def test_reader_rejects_non_utf8(tmp_path):
    root = tmp_path / "cuhk"
    (root / "imgs").mkdir(parents=True)
    (root / "reid_raw.json").write_bytes(b'[{"captions": ["caf\xe9"]}]')
    with pytest.raises(DatasetError, match=r"is not UTF-8 text \(byte 19\)"):
        read_cuhk_pedes(root)


def test_break_fixture_rejects_what_it_cannot_do(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    with pytest.raises(ConfigError, match="unknown break kind 'typo'; use one of malformed-json"):
        break_fixture(root, "cuhk-pedes", "typo")
    with pytest.raises(ConfigError, match="icfg-pedes only"):
        break_fixture(root, "cuhk-pedes", "icfg-name-mixup")
    with pytest.raises(ConfigError, match=r"entry must be an index from 0 to 15"):
        break_fixture(root, "cuhk-pedes", "empty-caption", entry=16)
    with pytest.raises(ConfigError, match=r"entry must be an index from 1 to 15"):
        break_fixture(root, "cuhk-pedes", "duplicate-path", entry=0)
    break_fixture(root, "cuhk-pedes", "missing-image")
    with pytest.raises(DatasetError, match="needs the image of entry 1 of reid_raw.json to be present"):
        break_fixture(root, "cuhk-pedes", "corrupt-image")
    assert set(BREAK_KINDS) >= set(STRUCTURAL_BREAKS)


def test_reader_reports_an_unreadable_annotation_file(tmp_path, monkeypatch):
    root = write_hand_root(tmp_path / "cuhk", HAND_ENTRIES)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(DatasetError, match=r"reid_raw\.json cannot be read \(Permission denied\); check its"):
        read_cuhk_pedes(root)


def test_train_pairs_can_keep_the_first_identities_only(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk", ids_per_split={"train": 5, "val": 2, "test": 2})
    data = read_dataset("cuhk-pedes", root)
    every = data.train_pairs()
    first = sorted({r.pid for r in data.split("train")})[:2]
    kept = data.train_pairs(2)
    assert {p.pid for p in kept} == {0, 1}
    assert [(p.path, p.caption) for p in kept] == [(p.path, p.caption) for p in every if p.pid < 2]
    assert [p.index for p in kept] == list(range(len(kept)))
    assert all(r.pid in first for r in data.split("train") if r.path in {p.path for p in kept})
    assert data.train_pairs(0) == every and data.train_pairs(5) == every
    with pytest.raises(ValueError, match=r"has 5 training identities, fewer than the 6 asked for; use 0 \(all\)"):
        data.train_pairs(6)
    with pytest.raises(ValueError, match="identities=-1 is invalid"):
        data.train_pairs(-1)
