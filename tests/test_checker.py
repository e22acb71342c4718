"""The dataset checker (tireid_lite.data.checker) and `tireid check-data`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tireid_lite.cli import main
from tireid_lite.data.checker import (
    MAX_LISTED,
    CheckReport,
    SplitCounts,
    check_dataset,
    decode_error,
    limit_listed,
)
from tireid_lite.data.fixtures import FIXTURE_DATASETS, break_fixture, write_fixture
from tireid_lite.data.readers import Problem, part_map_relpath, read_dataset
from tireid_lite.errors import DatasetError

ANNOTATION = {"cuhk-pedes": "reid_raw.json", "icfg-pedes": "ICFG-PEDES.json", "rstpreid": "data_captions.json"}
PATH_FIELD = {"cuhk-pedes": "file_path", "icfg-pedes": "file_path", "rstpreid": "img_path"}


def entries_of(root: Path, dataset: str) -> list[dict]:
    return json.loads((root / ANNOTATION[dataset]).read_text(encoding="utf-8"))


def errors(report: CheckReport) -> list[str]:
    return [p.message for p in report.problems if p.severity == "error"]


def of_severity(report: CheckReport, severity: str) -> list[str]:
    return [p.message for p in report.problems if p.severity == severity]


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: content hash and modification time."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_synth_layout(root: Path) -> Path:
    """A CUHK-PEDES fixture plus SynthPEDES's parts/ (48x16 label maps) and attributes.json."""
    write_fixture("cuhk-pedes", root)
    for entry in entries_of(root, "cuhk-pedes"):
        target = root / "parts" / part_map_relpath(entry["file_path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((48, 16), dtype=np.uint8)).save(target)
    (root / "attributes.json").write_text('{"CUHK01/0001001.png": {"top": "red"}}', encoding="utf-8")
    return root


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["check-data", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --- clean roots ------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", FIXTURE_DATASETS)
def test_clean_fixture_is_usable_with_counts(tmp_path, dataset):
    root = write_fixture(dataset, tmp_path / dataset)
    report = check_dataset(dataset, root, full=True)
    assert report.usable and not errors(report) and not of_severity(report, "warning")
    captions = 1 if dataset == "icfg-pedes" else 2
    expected = {"train": SplitCounts(4, 8, 8 * captions), "test": SplitCounts(2, 4, 4 * captions)}
    if dataset != "icfg-pedes":
        expected["val"] = SplitCounts(2, 4, 8)
    assert report.splits == {s: expected[s] for s in ("train", "val", "test") if s in expected}


def test_published_counts_are_notes(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    notes = of_severity(check_dataset("cuhk-pedes", root), "note")
    assert notes == [
        "train: 4 ids / 8 images / 16 captions, published 11,003 / 34,054 / 68,126 (fine if you meant a subset)",
        "val: 2 ids / 4 images / 8 captions, published 1,000 / 3,078 / 6,158 (fine if you meant a subset)",
        "test: 2 ids / 4 images / 8 captions, published 1,000 / 3,074 / 6,156 (fine if you meant a subset)",
    ]


def test_text_report_has_table_and_verdict(tmp_path, capsys):
    root = write_fixture("icfg-pedes", tmp_path / "icfg")
    status, out, err = run_cli(capsys, "--dataset", "icfg-pedes", "--root", str(root))
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"ICFG-PEDES at {root}"
    assert lines[1].split() == ["split", "ids", "images", "captions", "published", "ids", "/", "images", "/",
                                "captions"]
    assert lines[2].split() == ["train", "4", "8", "8", "3,102", "/", "34,674", "/", "-"]
    assert lines[3].split() == ["test", "2", "4", "4", "1,000", "/", "19,848", "/", "-"]
    assert lines[4] == "0 errors, 0 warnings, 2 notes"
    assert lines[-1] == "usable: yes"


# --- --json and exit status -------------------------------------------------------------------


@pytest.mark.parametrize("dataset", FIXTURE_DATASETS)
def test_json_output_shape(tmp_path, capsys, dataset):
    root = write_fixture(dataset, tmp_path / dataset)
    status, out, _ = run_cli(capsys, "--dataset", dataset, "--root", str(root), "--json")
    assert status == 0
    report = json.loads(out)  # exactly one JSON object
    assert set(report) == {"dataset", "root", "splits", "problems"}
    assert report["dataset"] == dataset and report["root"] == str(root)
    splits = ["train", "test"] if dataset == "icfg-pedes" else ["train", "val", "test"]
    assert list(report["splits"]) == splits
    assert all(set(c) == {"ids", "images", "captions"} for c in report["splits"].values())
    assert report["splits"]["test"]["ids"] == 2
    assert report["problems"] and all(set(p) == {"severity", "message"} for p in report["problems"])
    assert {p["severity"] for p in report["problems"]} == {"note"}


def test_json_output_of_a_broken_root_exits_1(tmp_path, capsys):
    root = write_fixture("rstpreid", tmp_path / "rstp")
    break_fixture(root, "rstpreid", "missing-image")
    status, out, _ = run_cli(capsys, "--dataset", "rstpreid", "--root", str(root), "--json")
    report = json.loads(out)
    assert status == 1
    assert report["problems"][0]["severity"] == "error"
    assert report["problems"][0]["message"].startswith("1 of 16 images missing")


def test_exit_status_follows_usability(tmp_path, capsys):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    break_fixture(root, "cuhk-pedes", "non-ascii-caption")  # a warning: still usable
    assert run_cli(capsys, "--dataset", "cuhk-pedes", "--root", str(root))[0] == 0
    break_fixture(root, "cuhk-pedes", "empty-caption", entry=3)
    status, out, _ = run_cli(capsys, "--dataset", "cuhk-pedes", "--root", str(root))
    assert status == 1 and out.splitlines()[-1] == "usable: no (fix the errors above)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "cuhk", "--root", "{tmp}"], "unknown dataset 'cuhk'; use one of cuhk-pedes, icfg-pedes, "
                                                   "rstpreid, synth"),
        (["--dataset", "rstpreid", "--root", "{tmp}/absent"], "dataset root {tmp}/absent does not exist; pass the "
                                                              "folder that holds data_captions.json and imgs/"),
        (["--dataset", "rstpreid", "--root", "{tmp}/a-file"], "dataset root {tmp}/a-file is a file, not a folder"),
    ],
)
def test_unusable_invocations_give_one_line(tmp_path, capsys, args, message):
    (tmp_path / "a-file").write_text("x")
    status, out, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert status == 1 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("tireid check-data: error: " + message.format(tmp=tmp_path))


def test_check_dataset_raises_only_when_nothing_can_be_checked(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        check_dataset("cuhk-pedes", tmp_path / "absent")
    report = check_dataset("cuhk-pedes", tmp_path)  # an empty folder: reported, not raised
    assert errors(report) == [
        f"{tmp_path / 'reid_raw.json'} not found; put the CUHK-PEDES annotation file there "
        "(see data_setup/README.md)",
        f"{tmp_path / 'imgs'}/ not found; CUHK-PEDES images must live under it with the paths of the "
        f"annotation file, e.g. {tmp_path / 'imgs' / 'CUHK01' / '0363004.png'}",
    ]
    assert report.splits == {}


# --- every problem collected ------------------------------------------------------------------


def test_collects_every_problem_where_the_reader_stops_at_one(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    entries = entries_of(root, "cuhk-pedes")
    for entry, kind in [(1, "missing-field"), (2, "wrong-type"), (3, "empty-caption"), (5, "duplicate-path"),
                        (6, "non-integer-id"), (7, "missing-image"), (8, "non-ascii-caption")]:
        break_fixture(root, "cuhk-pedes", kind, entry=entry)
    report = check_dataset("cuhk-pedes", root)
    found = errors(report)
    assert len(found) == 6
    for index, pattern in [(1, "field 'id' missing"), (2, "field 'captions' is the string"),
                           (3, "caption 0 is empty"), (5, "same image path as entry 0"),
                           (6, "field 'id' is the string")]:
        assert sum(f"entry {index} (" in m and pattern in m for m in found) == 1, (index, found)
    assert f"1 of 11 images missing from {root / 'imgs'}/: {entries[7]['file_path']};" in found[-1]
    assert len(of_severity(report, "warning")) == 1
    with pytest.raises(DatasetError, match="entry 1 "):
        read_dataset("cuhk-pedes", root)


@pytest.mark.parametrize("dataset", FIXTURE_DATASETS)
@pytest.mark.parametrize("kind", ["missing-field", "wrong-type", "empty-caption", "duplicate-path",
                                  "non-integer-id", "malformed-json"])
def test_checker_error_is_the_reader_error(tmp_path, dataset, kind):
    root = write_fixture(dataset, tmp_path / dataset)
    break_fixture(root, dataset, kind)
    with pytest.raises(DatasetError) as caught:
        read_dataset(dataset, root)
    assert errors(check_dataset(dataset, root)) == [str(caught.value)]


def test_missing_images_counted_with_first_five_and_folder(tmp_path):
    root = write_fixture("rstpreid", tmp_path / "rstp")
    paths = [e["img_path"] for e in entries_of(root, "rstpreid")]
    for rel in paths[3:10]:
        (root / "imgs" / rel).unlink()
    (message,) = errors(check_dataset("rstpreid", root))
    assert message == (f"7 of 16 images missing from {root / 'imgs'}/: {', '.join(paths[3:8])}, ...; "
                       "put the images there with the paths of data_captions.json")


def test_missing_images_in_a_nested_imgs_folder_get_a_hint(tmp_path):
    root = write_fixture("rstpreid", tmp_path / "rstp")
    shutil.move(root / "imgs", tmp_path / "moved")
    (root / "imgs").mkdir()
    shutil.move(tmp_path / "moved", root / "imgs" / "imgs")
    (message,) = errors(check_dataset("rstpreid", root))
    first = entries_of(root, "rstpreid")[0]["img_path"]
    assert message.startswith("16 of 16 images missing")
    assert message.endswith(f"({first} is under {root / 'imgs' / 'imgs'}/: move the images to {root / 'imgs'}/)")


def test_full_check_finds_corrupt_images(tmp_path, capsys):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    rel = entries_of(root, "cuhk-pedes")[1]["file_path"]
    break_fixture(root, "cuhk-pedes", "corrupt-image")
    assert check_dataset("cuhk-pedes", root).usable  # files exist; only decoding tells
    (message,) = errors(check_dataset("cuhk-pedes", root, full=True))
    assert message.startswith(f"1 of 16 images in {root / 'imgs'}/ do not decode: {rel} (")
    assert message.endswith("; replace them with intact copies")
    assert run_cli(capsys, "--dataset", "cuhk-pedes", "--root", str(root), "--full")[0] == 1


def test_decode_error_on_intact_and_broken_files(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((8, 4, 3), 200, dtype=np.uint8)).save(good)
    assert decode_error(good) is None
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    assert decode_error(bad).startswith("UnidentifiedImageError: ")


def test_non_ascii_caption_is_a_warning_naming_entry_and_character(tmp_path):
    root = write_fixture("icfg-pedes", tmp_path / "icfg")
    rel = entries_of(root, "icfg-pedes")[1]["file_path"]
    break_fixture(root, "icfg-pedes", "non-ascii-caption")
    report = check_dataset("icfg-pedes", root)
    assert report.usable
    assert of_severity(report, "warning") == [
        f"{root / 'ICFG-PEDES.json'}: entry 1 (file_path {rel!r}): caption 0 contains the non-ASCII "
        "character '…' (U+2026); usable as is (real CUHK-PEDES has a few), or replace it with ASCII"]


def test_long_lists_are_capped_per_kind(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    for entry in range(8):
        break_fixture(root, "cuhk-pedes", "non-ascii-caption", entry=entry)
    warnings = of_severity(check_dataset("cuhk-pedes", root), "warning")
    assert [int(re.search(r"entry (\d+)", w).group(1)) for w in warnings[:MAX_LISTED]] == [0, 1, 2, 3, 4]
    assert warnings[MAX_LISTED:] == ["3 more warnings of the kind 'non-ASCII character in a caption' not "
                                     "listed (the first 5 are above)"]


def test_limit_listed_keeps_first_of_each_kind_and_sorts_by_severity():
    problems = ([Problem("note", "n", "count")] + [Problem("warning", f"w{i}", "w") for i in range(7)]
                + [Problem("error", "e", "")])
    assert limit_listed(problems, limit=2) == [
        Problem("error", "e", ""),
        Problem("warning", "w0", "w"),
        Problem("warning", "w1", "w"),
        Problem("warning", "5 more warnings of the kind 'w' not listed (the first 2 are above)", "w"),
        Problem("note", "n", "count"),
    ]


# --- layout mix-ups ---------------------------------------------------------------------------


def test_icfg_name_mixup_says_rename(tmp_path, capsys):
    root = write_fixture("icfg-pedes", tmp_path / "icfg")
    break_fixture(root, "icfg-pedes", "icfg-name-mixup")
    status, out, _ = run_cli(capsys, "--dataset", "icfg-pedes", "--root", str(root))
    assert status == 1
    assert (f"error: {root / 'ICFG_PEDES.json'} found: the reader expects ICFG-PEDES.json (with a hyphen); "
            "rename it to ICFG-PEDES.json") in out.splitlines()


def test_caption_all_only_says_where_reid_raw_comes_from(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    break_fixture(root, "cuhk-pedes", "caption-all-only")
    (message,) = errors(check_dataset("cuhk-pedes", root))
    assert message.startswith(f"{root / 'caption_all.json'} found but {root / 'reid_raw.json'} is missing")
    assert "Person-Search-with-Natural-Language-Description" in message
    assert message.endswith(f"save it as {root / 'reid_raw.json'}")


def test_another_datasets_annotation_says_which_dataset(tmp_path, capsys):
    root = write_fixture("rstpreid", tmp_path / "rstp")
    status, out, _ = run_cli(capsys, "--dataset", "cuhk-pedes", "--root", str(root), "--json")
    (problem,) = json.loads(out)["problems"]
    assert status == 1
    assert problem["message"].endswith("data_captions.json is there: this looks like RSTPReid; "
                                       "use --dataset rstpreid")


def test_malformed_json_reports_line_and_column(tmp_path):
    root = write_fixture("rstpreid", tmp_path / "rstp")
    break_fixture(root, "rstpreid", "malformed-json", entry=4)  # the comma closing line 5 goes
    report = check_dataset("rstpreid", root)
    assert errors(report) == [f"{root / 'data_captions.json'} is not valid JSON: Expecting ',' delimiter at "
                              "line 6, column 1; fix the file there or fetch it again"]
    assert report.splits == {}


# --- dataset conventions ----------------------------------------------------------------------


def test_rstpreid_image_without_two_captions_is_a_warning(tmp_path):
    root = write_fixture("rstpreid", tmp_path / "rstp")
    entries = entries_of(root, "rstpreid")
    entries[2]["captions"] = entries[2]["captions"][:1]
    (root / "data_captions.json").write_text(json.dumps(entries), encoding="utf-8")
    report = check_dataset("rstpreid", root)
    assert report.usable
    assert of_severity(report, "warning") == [
        f"{root / 'data_captions.json'}: entry 2 (img_path {entries[2]['img_path']!r}): 1 caption, "
        "RSTPReid has exactly 2 per image"]


def test_rstpreid_images_per_identity_is_a_note(tmp_path):
    root = write_fixture("rstpreid", tmp_path / "rstp", ids_per_split={"train": 2, "val": 1, "test": 1},
                         images_per_id=5)
    assert not any("images (e.g." in n for n in of_severity(check_dataset("rstpreid", root), "note"))
    entries = entries_of(root, "rstpreid")
    (root / "data_captions.json").write_text(json.dumps(entries[1:]), encoding="utf-8")
    notes = of_severity(check_dataset("rstpreid", root), "note")
    assert ("train: 1 of 2 identities do not have 5 images (e.g. id 0 has 4); RSTPReid publishes 5 per "
            "identity") in notes


def test_icfg_val_split_is_a_note(tmp_path):
    root = write_fixture("icfg-pedes", tmp_path / "icfg")
    entries = entries_of(root, "icfg-pedes")
    entries[0]["split"] = "val"
    (root / "ICFG-PEDES.json").write_text(json.dumps(entries), encoding="utf-8")
    report = check_dataset("icfg-pedes", root)
    assert report.usable and report.splits["val"] == SplitCounts(1, 1, 1)
    assert any(n.startswith("entries with split 'val' found; ICFG-PEDES publishes train and test only")
               for n in of_severity(report, "note"))


# --- SynthPEDES -------------------------------------------------------------------------------


def test_synth_layout_passes_and_cuhk_check_notes_it(tmp_path):
    root = make_synth_layout(tmp_path / "synth")
    report = check_dataset("synth", root, full=True)
    assert report.usable and report.problems == []  # no published counts for SynthPEDES
    notes = of_severity(check_dataset("cuhk-pedes", root), "note")
    assert any("this looks like SynthPEDES; --dataset synth also checks its part maps" in n for n in notes)


def test_synth_missing_part_maps_and_attributes(tmp_path):
    root = make_synth_layout(tmp_path / "synth")
    entries = entries_of(root, "cuhk-pedes")
    missing = [part_map_relpath(e["file_path"]) for e in entries[:2]]
    for rel in missing:
        (root / "parts" / rel).unlink()
    (root / "attributes.json").unlink()
    found = errors(check_dataset("synth", root))
    assert found[0].startswith(f"{root / 'attributes.json'} not found")
    assert found[1] == (f"2 of 16 images have no part map in {root / 'parts'}/: {', '.join(missing)}; "
                        "regenerate the dataset with `tireid synth --out DIR`")


def test_synth_malformed_attributes_and_part_map_size(tmp_path):
    root = make_synth_layout(tmp_path / "synth")
    (root / "attributes.json").write_text('{"a": }', encoding="utf-8")
    rel = part_map_relpath(entries_of(root, "cuhk-pedes")[0]["file_path"])
    Image.fromarray(np.zeros((24, 8), dtype=np.uint8)).save(root / "parts" / rel)
    report = check_dataset("synth", root, full=True)
    assert errors(report) == [f"{root / 'attributes.json'} is not valid JSON at line 1, column 7; regenerate "
                              "the dataset with `tireid synth --out DIR`"]
    assert of_severity(report, "warning") == [
        f"1 part maps in {root / 'parts'}/ differ in size from their image: {rel}; regenerate the dataset "
        "with `tireid synth --out DIR`"]


def test_synth_without_parts_folder(tmp_path, capsys):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    status, out, _ = run_cli(capsys, "--dataset", "synth", "--root", str(root))
    assert status == 1
    assert f"error: {root / 'parts'}/ not found: a SynthPEDES root holds one part-label PNG per image" in out


# --- read-only --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [None, "corrupt-image", "malformed-json", "icfg-name-mixup"])
def test_checking_modifies_nothing(tmp_path, capsys, kind):
    root = write_fixture("icfg-pedes", tmp_path / "icfg")
    if kind:
        break_fixture(root, "icfg-pedes", kind)
    before = snapshot(root)
    run_cli(capsys, "--dataset", "icfg-pedes", "--root", str(root), "--full")
    run_cli(capsys, "--dataset", "icfg-pedes", "--root", str(root), "--json")
    assert snapshot(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["icfg"]


def test_text_report_of_an_unreadable_annotation(tmp_path, capsys):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    break_fixture(root, "cuhk-pedes", "malformed-json")
    status, out, _ = run_cli(capsys, "--dataset", "cuhk-pedes", "--root", str(root))
    assert status == 1
    assert out.splitlines() == [
        f"CUHK-PEDES at {root}",
        "no annotation entries could be read",
        "1 error, 0 warnings, 0 notes",
        f"error: {root / 'reid_raw.json'} is not valid JSON: Expecting ',' delimiter at line 3, column 1; "
        "fix the file there or fetch it again",
        "usable: no (fix the errors above)",
    ]


def test_synth_table_has_no_published_counts(tmp_path, capsys):
    root = make_synth_layout(tmp_path / "synth")
    status, out, _ = run_cli(capsys, "--dataset", "synth", "--root", str(root))
    assert status == 0
    assert [line.split() for line in out.splitlines()[2:5]] == [
        ["train", "4", "8", "16", "-"], ["val", "2", "4", "8", "-"], ["test", "2", "4", "8", "-"]]
