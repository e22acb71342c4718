"""SynthPEDES (tireid_lite.data.synth): attributes, shapes, drawing, captions, files on disk, CLI, cache.

Expected values are worked by hand, by brute-force loops, or read back through an
independent path (PIL decodes the PNGs; the tests keep their own colour-word
table and read captions with their own patterns).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tireid_lite.data.synth.generate as generate_module
from tireid_lite.cli import main as tireid_main
from tireid_lite.data.readers import read_dataset
from tireid_lite.data.synth import (
    PART_CLASSES,
    VIEWS,
    Identity,
    SynthKnobs,
    apply_edit,
    attribute_differences,
    caption_for,
    ensure_synth,
    features_in_view,
    generate_synth,
    render_person,
    render_scene,
    render_scenes,
    sample_identity,
    sample_scene,
    synth_cache_path,
    tokens_of,
)
from tireid_lite.data.synth.attributes import applicable_edits, colour_probs, sample_identities
from tireid_lite.data.synth.cli import parse_size_text
from tireid_lite.data.synth.png import encode_png
from tireid_lite.data.synth.scene import parse_size
from tireid_lite.data.synth.shapes import bar, ellipse, rect, trapezoid
from tireid_lite.errors import ConfigError, DatasetError

# The tests' own reading of colour words: every word a caption may use -> the colour it names.
COLOUR_WORDS = {
    "black": "black", "white": "white", "grey": "grey", "gray": "grey", "blue": "blue", "red": "red",
    "navy": "navy", "dark blue": "navy", "brown": "brown", "green": "green", "pink": "pink", "beige": "beige",
    "khaki": "beige", "yellow": "yellow", "purple": "purple", "orange": "orange", "blonde": "blonde",
    "blond": "blonde",
}
COLOUR_RE = "|".join(sorted(map(re.escape, COLOUR_WORDS), key=len, reverse=True))  # "dark blue" before "blue"
RGB = {
    "black": (28, 28, 32), "white": (232, 232, 226), "grey": (128, 128, 132), "blue": (45, 88, 195),
    "red": (196, 34, 40), "navy": (28, 38, 92), "brown": (112, 72, 42), "green": (46, 136, 64),
    "pink": (236, 138, 176), "beige": (214, 194, 152), "yellow": (232, 202, 48), "purple": (116, 54, 152),
    "orange": (236, 124, 34),
}
PART = {name: i for i, name in enumerate(PART_CLASSES)}
QUIET = SynthKnobs(occlusion_prob=0.0, jitter=0.0, lighting=0.0, clutter=0.0)  # no occluder, crop or lighting
TINY = dict(ids_train=6, ids_val=4, ids_test=4, images_per_id=2, seed=3)


def person(**changes) -> Identity:
    """A hand-written identity; ``changes`` replace fields."""
    base = Identity(
        gender="female", hair_style="long", hair_colour="brown", hat="none", hat_colour=None, top="t-shirt",
        top_colour="red", top_pattern="plain", pattern_colour=None, sleeves="short", bottom="skirt",
        bottom_colour="navy", shoe_colour="white", bag="none", bag_colour=None, bag_side=None, skin=1,
        build=1.0, stature=0.97,
    )
    return dataclasses.replace(base, **changes)


def colours_named(caption: str) -> list[str]:
    return [COLOUR_WORDS[m.lower()] for m in re.findall(rf"\b({COLOUR_RE})\b", caption, flags=re.IGNORECASE)]


def identity_colours(identity: Identity) -> set[str]:
    fields = ("hair_colour", "hat_colour", "top_colour", "pattern_colour", "bottom_colour", "shoe_colour",
              "bag_colour")
    return {getattr(identity, f) for f in fields} - {None}


def differing_fields(a: Identity, b: Identity) -> set[str]:
    return {f.name for f in dataclasses.fields(Identity) if getattr(a, f.name) != getattr(b, f.name)}


# --------------------------------------------------------------------------- knobs and attributes


def test_knobs_reject_unknown_names_and_out_of_range_values():
    with pytest.raises(ConfigError, match=r"unknown SynthPEDES knob 'occlusion'; the knobs are clutter, "):
        SynthKnobs.from_kwargs(occlusion=0.3)
    with pytest.raises(ConfigError, match=r"occlusion_prob=1.5 is out of range; give a value in \[0.0, 1.0"):
        SynthKnobs(occlusion_prob=1.5)
    with pytest.raises(ConfigError, match=r"clutter='lots' is not a number"):
        SynthKnobs(clutter="lots")
    assert SynthKnobs.from_kwargs(noise=3).noise == 3.0


def test_colour_probs_are_zipf_by_hand():
    # 1/1, 1/2, 1/3 normalised by 11/6
    np.testing.assert_allclose(colour_probs(1.0, n=3), [6 / 11, 3 / 11, 2 / 11])
    np.testing.assert_allclose(colour_probs(0.0, n=4), [0.25] * 4)


def test_colour_frequency_is_skewed():
    rng = np.random.default_rng(0)
    counts = Counter()
    for identity in (sample_identity(rng) for _ in range(3000)):
        counts.update([identity.top_colour, identity.bottom_colour, identity.shoe_colour])
    assert len(counts) == len(RGB)  # every colour occurs
    assert counts.most_common()[0][0] == "black"
    assert counts["black"] >= 5 * min(counts.values())  # Zipf s=1 over 13 colours: about 13x
    uniform = Counter()
    for identity in (sample_identity(rng, zipf=0.0) for _ in range(3000)):
        uniform.update([identity.top_colour, identity.bottom_colour, identity.shoe_colour])
    assert max(uniform.values()) < 1.5 * min(uniform.values())


def test_identities_are_unique_and_consistent():
    rng = np.random.default_rng(1)
    people = sample_identities(600, rng)
    assert len({p.described() for p in people}) == 600
    for p in people:
        assert (p.hair_style == "bald") == (p.hair_colour is None)
        assert (p.hat == "none") == (p.hat_colour is None)
        assert (p.top_pattern == "plain") == (p.pattern_colour is None)
        assert p.pattern_colour != p.top_colour
        assert (p.bag == "none") == (p.bag_colour is None)
        assert (p.bag in ("shoulder bag", "handbag")) == (p.bag_side in ("left", "right"))
        assert p.bottom != "skirt" or p.gender == "female"
        assert p.sleeves == "long" or p.top in ("t-shirt", "shirt")


@pytest.mark.parametrize("edit", ["shoe_colour", "hat", "bag_side", "bag_colour", "hair_colour"])
def test_hard_negative_edit_changes_one_attribute(edit):
    rng = np.random.default_rng(2)
    bases = (person(bag="handbag", bag_colour="black", bag_side="left"),
             person(hat="cap", hat_colour="green", bag="shoulder bag", bag_colour="red", bag_side="right"))
    for base in bases:
        partner = apply_edit(base, edit, rng)
        if edit == "hat":
            assert differing_fields(base, partner) == {"hat", "hat_colour"}
            assert (base.hat == "none") != (partner.hat == "none")
        else:
            assert differing_fields(base, partner) == {edit}
        assert attribute_differences(base, partner) == [edit]
        if edit == "bag_side":
            assert {base.bag_side, partner.bag_side} == {"left", "right"}


def test_edits_that_do_not_apply_are_refused():
    plain = person()  # no bag, no hat
    assert applicable_edits(plain) == ("shoe_colour", "hat", "hair_colour")
    with pytest.raises(ValueError, match="edit 'bag_side' does not apply"):
        apply_edit(plain, "bag_side", np.random.default_rng(0))


def test_attribute_differences_by_hand():
    a = person()
    assert attribute_differences(a, a) == []
    assert attribute_differences(a, person(shoe_colour="red", bottom="trousers")) == ["bottom", "shoe_colour"]
    assert attribute_differences(a, person(hat="beanie", hat_colour="black")) == ["hat"]
    assert attribute_differences(a, person(skin=3, build=0.9)) == []  # undescribed traits


# --------------------------------------------------------------------------- shapes and PNG


def grid(width: int, height: int):
    """u = 0..width-1 and v = 0..height-1 as (1, W, 1) and (H, 1, 1) grids (one image)."""
    return (np.arange(width, dtype=np.float32).reshape(1, -1, 1),
            np.arange(height, dtype=np.float32).reshape(-1, 1, 1))


def test_rect_and_ellipse_on_a_small_grid():
    u, v = grid(5, 4)
    expected = np.zeros((4, 5), bool)
    expected[1:3, 1:4] = True
    assert np.array_equal(rect(u, v, 1, 3, 1, 2)[..., 0], expected)
    assert not rect(u, v, 1, 3, 1, 2, on=np.array([False])).any()
    # centre (2, 1.5), radii 2 and 1.5: inside when ((u-2)/2)^2 + ((v-1.5)/1.5)^2 <= 1
    expected = np.array([
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0],
    ], bool)
    assert np.array_equal(ellipse(u, v, 2.0, 1.5, 2.0, 1.5)[..., 0], expected)


def test_trapezoid_by_hand():
    u, v = grid(7, 3)
    # rows 0..2, half-width 1 at v=0 growing to 3 at v=2, centred on u=3
    expected = np.array([
        [0, 0, 1, 1, 1, 0, 0],
        [0, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 1],
    ], bool)
    assert np.array_equal(trapezoid(u, v, 3.0, 0.0, 2.0, 1.0, 3.0)[..., 0], expected)


def test_bar_matches_point_to_line_distance():
    u, v = grid(20, 30)
    u0, v0, u1, v1, radius = 3.0, 2.0, 14.0, 27.0, 2.5
    core, t = bar(u, v, u0, v0, u1, v1, radius)
    length = np.hypot(u1 - u0, v1 - v0)
    for row in range(30):
        assert t[row, 0, 0] == pytest.approx((row - v0) / (v1 - v0))
        for column in range(20):
            # distance from (column, row) to the line through the two points, by the cross product
            distance = abs((u1 - u0) * (row - v0) - (v1 - v0) * (column - u0)) / length
            if abs(distance - radius) > 1e-3:
                assert core[row, column, 0] == (distance <= radius), (row, column)


@pytest.mark.parametrize("shape", [(5, 7, 3), (6, 4)])
def test_png_round_trip_through_pil(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)  # values wrap in the Up filter
    decoded = Image.open(io.BytesIO(encode_png(pixels)))
    assert decoded.mode == ("RGB" if len(shape) == 3 else "L")
    assert np.array_equal(np.asarray(decoded), pixels)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(pixels.astype(np.int32))


# --------------------------------------------------------------------------- sizes and drawing


def test_parse_size_accepts_three_to_one_and_refuses_the_rest():
    assert parse_size((96, 32)) == (96, 32)
    assert parse_size([384, 128]) == (384, 128)
    with pytest.raises(ConfigError, match="size 96x96 is not about 3:1"):
        parse_size((96, 96))
    with pytest.raises(ConfigError, match="size 36x12 is outside the supported range"):
        parse_size((36, 12))
    with pytest.raises(ConfigError, match=r"size \(96.5, 32\) is not \(height, width\)"):
        parse_size((96.5, 32))
    assert parse_size_text(" 192x64 ") == (192, 64)
    with pytest.raises(ConfigError, match="--size '96by32' is not HxW"):
        parse_size_text("96by32")


@pytest.mark.parametrize("size", [(48, 16), (96, 32), (384, 128)])
def test_render_shapes_and_every_body_part(size):
    rng = np.random.default_rng(4)
    people = [person(hat="cap", hat_colour="green", bottom="shorts"), person(bag="handbag", bag_colour="pink",
                                                                             bag_side="right")]
    image, parts = render_person(people[0], "front", rng, size, knobs=QUIET)
    assert image.shape == (*size, 3) and image.dtype == np.uint8
    assert parts.shape == size and parts.dtype == np.uint8
    present = {PART_CLASSES[i] for i in np.unique(parts)}
    assert present == {"background", "hat", "hair", "face", "upper_clothes", "lower_clothes", "arms", "legs",
                       "shoes"}
    _, parts = render_person(people[1], "back", rng, size, knobs=QUIET)
    assert {PART_CLASSES[i] for i in np.unique(parts)} == {
        "background", "hair", "upper_clothes", "lower_clothes", "arms", "legs", "shoes", "bag"}


def test_part_map_is_what_was_drawn():
    """Without lighting, every pixel of a one-colour part has exactly that part's colour."""
    who = person(hat="beanie", hat_colour="yellow", bottom="trousers", bottom_colour="green",
                 shoe_colour="orange")
    expected = {"hat": "yellow", "lower_clothes": "green", "shoes": "orange", "upper_clothes": "red"}
    for view in VIEWS:
        image, parts = render_person(who, view, np.random.default_rng(5), (96, 32), knobs=QUIET)
        for part, colour in expected.items():
            pixels = image[parts == PART[part]]
            assert len(pixels) > 0, (view, part)
            assert (pixels == RGB[colour]).all(), (view, part)


def test_hat_class_only_when_a_hat_is_drawn():
    rng = np.random.default_rng(6)
    for _ in range(20):
        bare = sample_identity(rng)
        if bare.hat != "none":
            continue
        hatted = apply_edit(bare, "hat", rng)
        for view in VIEWS:
            assert PART["hat"] not in render_person(bare, view, rng, knobs=QUIET)[1]
            assert PART["hat"] in render_person(hatted, view, rng, knobs=QUIET)[1]


def test_backpack_shows_from_back_and_side_only():
    who = person(bag="backpack", bag_colour="purple")
    for view in VIEWS:
        _, parts = render_person(who, view, np.random.default_rng(7), knobs=QUIET)
        assert (PART["bag"] in parts) == (view != "front"), view


def test_shoulder_bag_side_flips_with_the_view():
    who = person(bag="shoulder bag", bag_colour="blue", bag_side="left")
    scene = sample_scene(who, "front", np.random.default_rng(8), QUIET)
    axis = scene.centre_x * 32  # the body axis in pixels
    columns = {}
    for view in ("front", "back"):
        _, parts, _ = render_scene(dataclasses.replace(scene, view=view), (96, 32))
        columns[view] = np.nonzero(parts == PART["bag"])[1].mean()
    assert columns["front"] > axis  # the person's left is the image's right when facing the camera
    assert columns["back"] < axis
    for view, near in (("left", True), ("right", False)):  # walking left shows the left side
        _, parts, visible = render_scene(dataclasses.replace(scene, view=view), (96, 32))
        assert (PART["bag"] in parts) == near == ("bag" in visible)


def test_logo_visible_from_the_front_only():
    who = person(top_pattern="logo", pattern_colour="yellow", top_colour="blue")
    for view in VIEWS:
        image, parts = render_person(who, view, np.random.default_rng(9), knobs=QUIET)
        yellow_top = (image == RGB["yellow"]).all(axis=-1) & (parts == PART["upper_clothes"])
        assert yellow_top.any() == (view == "front"), view


def test_batch_drawing_equals_one_at_a_time():
    rng = np.random.default_rng(10)
    knobs = SynthKnobs(noise=3.0, occlusion_prob=0.5)
    scenes = [sample_scene(sample_identity(rng), VIEWS[k % 4], rng, knobs) for k in range(7)]
    batch = render_scenes(scenes, (96, 32))
    for i, scene in enumerate(scenes):
        image, parts, visible = render_scene(scene, (96, 32))
        assert np.array_equal(batch.images[i], image)
        assert np.array_equal(batch.parts[i], parts)
        assert batch.visible[i] == visible


def test_renderer_visibility_agrees_with_features_in_view():
    rng = np.random.default_rng(11)
    scenes = [sample_scene(sample_identity(rng), VIEWS[k % 4], rng, QUIET) for k in range(300)]
    drawn = render_scenes(scenes, (96, 32))
    for scene, visible in zip(scenes, drawn.visible):
        assert visible == features_in_view(scene.identity, scene.view), (scene.view, scene.identity)


def test_same_seed_same_pixels():
    who = person(top_pattern="striped", pattern_colour="white")
    a = render_person(who, "left", np.random.default_rng(12))
    b = render_person(who, "left", np.random.default_rng(12))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# --------------------------------------------------------------------------- captions


def test_tokens_split_off_punctuation_and_lowercase():
    expected = ["a", "man", "wearing", "a", "t-shirt", "he's", "tall"]
    assert tokens_of("A man, wearing a T-shirt. He's tall!") == expected


def check_caption(caption: str, identity: Identity, view: str, visible: frozenset[str]) -> None:
    """What a caption may say about an image, read with the tests' own patterns."""
    words = len(caption.split())
    assert 15 <= words <= 40, (words, caption)
    lower = caption.lower()
    assert set(colours_named(caption)) <= identity_colours(identity), caption
    male_words = re.search(r"\b(man|guy|male|he|his)\b", lower)
    female_words = re.search(r"\b(woman|lady|girl|female|she|her)\b", lower)
    assert (male_words is not None, female_words is not None) == (
        (True, False) if identity.gender == "male" else (False, True)), caption
    said = {
        "bag": re.search(r"\b(backpack|bag|handbag)\b", lower),
        "hat": re.search(r"\b(cap|beanie|hat)\b", lower),
        "shoes": re.search(r"\b(shoes|sneakers)\b", lower),
        "logo": re.search(r"\blogo\b", lower),
        "stripes": re.search(r"\bstripe[sd]\b", lower),
    }
    for feature, match in said.items():
        if match:
            assert (feature if feature != "stripes" else "pattern") in visible, caption
    for noun, field in (("backpack", "bag_colour"), ("shoulder bag", "bag_colour"), ("handbag", "bag_colour"),
                        ("shoes", "shoe_colour"), ("sneakers", "shoe_colour"), ("beanie", "hat_colour"),
                        ("cap", "hat_colour"), ("knit hat", "hat_colour"), ("skirt", "bottom_colour"),
                        ("shorts", "bottom_colour")):
        for found in re.findall(rf"\b({COLOUR_RE}) (?:baseball )?(?:knee-length )?{noun}\b", lower):
            assert COLOUR_WORDS[found] == getattr(identity, field), caption
    side = re.search(r"\b(left|right) (shoulder|hand)\b", lower)
    if side:
        assert side.group(1) == identity.bag_side, caption
    if "backpack" in lower:
        assert identity.bag == "backpack" and view != "front", caption
    if re.search(r"\bhand ?bag\b", lower):
        assert identity.bag == "handbag", caption
    if re.search(r"\bshoulder bag\b|\bbag (on|over) (his|her) (left|right) shoulder\b", lower):
        assert identity.bag == "shoulder bag", caption
    assert "none" not in lower, caption


def test_captions_are_true_and_in_length():
    rng = np.random.default_rng(13)
    for k in range(400):
        identity = sample_identity(rng)
        view = VIEWS[k % 4]
        visible = features_in_view(identity, view)
        check_caption(caption_for(identity, view, rng), identity, view, visible)


def test_captions_of_occluded_images_respect_what_is_left():
    rng = np.random.default_rng(14)
    knobs = SynthKnobs(occlusion_prob=1.0, jitter=2.0)
    scenes = [sample_scene(sample_identity(rng), VIEWS[k % 4], rng, knobs) for k in range(200)]
    drawn = render_scenes(scenes, (96, 32))
    for scene, visible in zip(scenes, drawn.visible):
        caption = caption_for(scene.identity, scene.view, rng, visible=visible)
        check_caption(caption, scene.identity, scene.view, visible)
        if "hidden" in caption:
            assert "occluded" in visible


def test_full_coverage_mentions_every_visible_attribute():
    """Hair, top, bottom, shoes and bag fit in 40 words: with coverage 1 none may go missing."""
    rng = np.random.default_rng(17)
    for bag, noun in (("backpack", r"backpack"), ("shoulder bag", r"bag"), ("handbag", r"hand ?bag")):
        who = person(bag=bag, bag_colour="green", bag_side=None if bag == "backpack" else "right",
                     bottom="trousers")
        for _ in range(60):
            caption = caption_for(who, "back", rng, coverage=1.0).lower()
            for pattern in ("hair", "t-shirt|tee shirt", "trousers|pants", "shoes|sneakers", noun):
                assert re.search(rf"\b({pattern})\b", caption), (pattern, caption)


def test_captions_reach_fifteen_words_with_nothing_visible():
    rng = np.random.default_rng(15)
    for _ in range(20):
        caption = caption_for(person(), "back", rng, visible=frozenset())
        assert 15 <= len(caption.split()) <= 40
        assert colours_named(caption) == []


def test_coverage_controls_how_much_is_said():
    rng = np.random.default_rng(16)
    people = [sample_identity(rng) for _ in range(200)]
    few = np.mean([len(colours_named(caption_for(p, "front", rng, coverage=0.2))) for p in people])
    many = np.mean([len(colours_named(caption_for(p, "front", rng, coverage=1.0))) for p in people])
    assert many > few + 1.0


# --------------------------------------------------------------------------- the dataset on disk


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate_synth(tmp_path_factory.mktemp("synth") / "out", **TINY)


def test_layout_of_reid_raw(tiny):
    entries = json.loads((tiny / "reid_raw.json").read_text())
    assert isinstance(entries, list) and len(entries) == 14 * 2
    splits_of_id: dict[int, set[str]] = {}
    for entry in entries:
        assert list(entry) == ["split", "captions", "file_path", "processed_tokens", "id"]
        assert entry["split"] in ("train", "val", "test")
        assert isinstance(entry["id"], int) and entry["id"] >= 1
        pid = f"{entry['id']:04d}"
        assert re.fullmatch(rf"{entry['split']}/{pid}/{pid}_0[01]\.png", entry["file_path"])
        assert len(entry["captions"]) == 2 and all(isinstance(c, str) for c in entry["captions"])
        assert entry["captions"][0] != entry["captions"][1]
        assert len(entry["processed_tokens"]) == 2
        for caption, tokens in zip(entry["captions"], entry["processed_tokens"]):
            assert tokens == re.findall(r"[a-z0-9'-]+", caption.lower().replace(".", " ").replace(",", " "))
        splits_of_id.setdefault(entry["id"], set()).add(entry["split"])
        image = Image.open(tiny / "imgs" / entry["file_path"])
        part_map = Image.open(tiny / "parts" / entry["file_path"])
        assert (image.mode, image.size) == ("RGB", (32, 96))
        assert (part_map.mode, part_map.size) == ("L", (32, 96))
        assert np.asarray(part_map).max() < len(PART_CLASSES)
    assert sorted(splits_of_id) == list(range(1, 15))  # ids 1..14, unique across splits
    assert all(len(s) == 1 for s in splits_of_id.values())
    counts = Counter(next(iter(s)) for s in splits_of_id.values())
    assert counts == {"train": 6, "val": 4, "test": 4}


def test_attributes_record(tiny):
    record = json.loads((tiny / "attributes.json").read_text())
    entries = {e["file_path"]: e for e in json.loads((tiny / "reid_raw.json").read_text())}
    assert record["params"]["seed"] == 3 and record["params"]["size"] == [96, 32]
    assert record["params"]["knobs"]["hard_negative_fraction"] == 0.5
    assert record["part_classes"] == list(PART_CLASSES)
    people = {p["id"]: p for p in record["identities"]}
    fields = {f.name for f in dataclasses.fields(Identity)}
    assert all(set(p) == fields | {"id", "split"} for p in people.values())
    assert {p["id"]: p["split"] for p in people.values()} == {e["id"]: e["split"] for e in entries.values()}
    assert len(record["images"]) == len(entries)
    for image in record["images"]:
        identity = Identity(**{k: v for k, v in people[image["id"]].items() if k in fields})
        visible = frozenset(image["visible"])
        assert image["view"] in VIEWS
        for caption in entries[image["file_path"]]["captions"]:
            check_caption(caption, identity, image["view"], visible)
        parts = np.asarray(Image.open(tiny / "parts" / image["file_path"]))
        if identity.hat == "none":
            assert PART["hat"] not in parts
        if "hat" in visible:
            assert PART["hat"] in parts
        assert (PART["bag"] in parts) >= ("bag" in visible)


def test_hard_negative_pairs_differ_in_one_attribute(tiny):
    record = json.loads((tiny / "attributes.json").read_text())
    people = {p["id"]: p for p in record["identities"]}
    pairs = record["hard_negative_pairs"]
    assert sorted(p["split"] for p in pairs) == ["test", "val"]  # int(0.5 * 4) // 2 = 1 pair in each
    for pair in pairs:
        a, b = (people[i] for i in pair["ids"])
        assert a["split"] == b["split"] == pair["split"]
        changed = {k for k in a if k != "id" and a[k] != b[k]}
        expected = {"hat", "hat_colour"} if pair["attribute"] == "hat" else {pair["attribute"]}
        assert changed == expected


def test_same_arguments_same_bytes(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(generate_module, "BATCH", 5)  # batching must not change a byte
    again = generate_synth(tmp_path / "again", **TINY)

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first, second = files(tiny), files(again)
    assert len(first) == 2 + 2 * 28
    assert first == second
    other = generate_synth(tmp_path / "other", **{**TINY, "seed": 4})
    assert (other / "reid_raw.json").read_bytes() != first["reid_raw.json"]


def test_non_empty_out_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=rf"{re.escape(str(out))} is not empty; choose an empty or new "
                                           r"directory, or pass overwrite=True \(--overwrite\)"):
        generate_synth(out, **TINY)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary directory left
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="is a file; give a directory path"):
        generate_synth(tmp_path / "file", **TINY)


def test_overwrite_replaces_and_an_empty_dir_is_fine(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert generate_synth(out, **TINY) == out  # empty: accepted
    (out / "notes.txt").write_text("old")
    generate_synth(out, overwrite=True, **TINY)
    assert sorted(p.name for p in out.iterdir()) == ["attributes.json", "imgs", "parts", "reid_raw.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_crash_leaves_no_half_dataset(tmp_path, monkeypatch):
    out = tmp_path / "out"
    generate_synth(out, **TINY)
    before = (out / "reid_raw.json").read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(generate_module, "_captions", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate_synth(out, overwrite=True, **TINY)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate_synth(tmp_path / "new", **TINY)
    assert (out / "reid_raw.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bad_arguments_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="size 96x40 is not about 3:1"):
        generate_synth(tmp_path / "a", **{**TINY, "size": (96, 40)})
    with pytest.raises(ConfigError, match=r"SynthPEDES ids_test=0 is not valid; give an integer >= 1"):
        generate_synth(tmp_path / "a", **{**TINY, "ids_test": 0})
    with pytest.raises(ConfigError, match="unknown SynthPEDES knob 'blur'"):
        generate_synth(tmp_path / "a", blur=1.0, **TINY)
    assert not any(tmp_path.iterdir())


def test_knobs_reach_the_images(tmp_path):
    root = generate_synth(tmp_path / "occluded", **{**TINY, "occlusion_prob": 1.0, "caption_coverage": 1.0})
    record = json.loads((root / "attributes.json").read_text())
    assert record["params"]["knobs"]["occlusion_prob"] == 1.0
    assert sum("occluded" in image["visible"] for image in record["images"]) > len(record["images"]) // 2


# --------------------------------------------------------------------------- CLI and cache


def test_cli_writes_and_summarises(tmp_path, capsys):
    out = tmp_path / "cli"
    status = tireid_main(["synth", "--out", str(out), "--ids-train", "3", "--ids-val", "1", "--ids-test", "2",
                          "--images-per-id", "2", "--size", "48x16", "--seed", "1",
                          "--occlusion-prob", "0.5"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert status == 0 and len(printed) == 1
    assert re.fullmatch(rf"SynthPEDES written to {re.escape(str(out))}: 12 images, 24 captions in [\d.]+ s "
                        r"\(\d+ images/s\)", printed[0])
    record = json.loads((out / "attributes.json").read_text())
    assert record["params"]["size"] == [48, 16] and record["params"]["knobs"]["occlusion_prob"] == 0.5


def test_cli_bad_size_and_non_empty_out(tmp_path, capsys):
    status = tireid_main(["synth", "--out", str(tmp_path / "x"), "--size", "96by32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err == ["tireid synth: error: --size '96by32' is not HxW; give the height and width in pixels "
                   "joined by x, e.g. 96x32"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("a")
    status = tireid_main(["synth", "--out", str(tmp_path / "full"), "--ids-train", "2", "--ids-test", "2"])
    assert status == 1 and "is not empty" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_ensure_synth_generates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TIREID_CACHE", str(tmp_path / "cache"))
    root = ensure_synth(**TINY)
    assert root == synth_cache_path(**TINY)
    assert root.parent == tmp_path / "cache" / "synth" and re.fullmatch(r"[0-9a-f]{16}", root.name)
    assert (root / "reid_raw.json").is_file() and (root / "attributes.json").is_file()

    def no_second_time(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(generate_module, "_write_dataset", no_second_time)
    assert ensure_synth(**TINY) == root
    assert synth_cache_path(**{**TINY, "seed": 9}) != root
    assert synth_cache_path(**TINY, clutter=0.1) != root


def test_ensure_synth_from_two_threads_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TIREID_CACHE", str(tmp_path / "cache"))
    start = threading.Barrier(2)
    results, errors = [], []

    def worker():
        start.wait()
        try:
            results.append(ensure_synth(**TINY))
        except Exception as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 2 and results[0] == results[1]
    # the loser's temporary copy is gone; the lock file stays (see tireid_lite.cache_lock)
    assert sorted(os.listdir(results[0].parent)) == [results[0].name, results[0].name + ".lock"]
    assert len(json.loads((results[0] / "reid_raw.json").read_text())) == 28


def test_read_back_through_the_cuhk_reader(tiny):
    dataset = read_dataset("synth", tiny)
    entries = json.loads((tiny / "reid_raw.json").read_text())
    assert [(r.path, r.pid, list(r.captions), r.split) for r in dataset.records] == [
        (e["file_path"], e["id"], e["captions"], e["split"]) for e in entries
    ]
    test = dataset.eval_set("test")
    assert len(test.gallery_paths) == 8 and len(test.query_captions) == 16
    assert len({p.pid for p in dataset.train_pairs()}) == 6
