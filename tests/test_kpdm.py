"""method=kpdm: its heads and switches, what the cross-modal module sees, retrieval, the noise partitioner.

Unit tests run a tiny model on four hand-written captions; the training tests
use the Trainer's tiny CUHK-PEDES-format fixture (8 training identities x 3
images x 2 captions = 48 pairs, batch 8, one thread) so two runs of one config
compute bit-identical numbers. Key phrases are cached in a temporary
``TIREID_CACHE``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tireid_lite import cli
from tireid_lite.config import apply_overrides, get_profile, save_config
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.data.transforms import mirror_caption
from tireid_lite.errors import ConfigError
from tireid_lite.checkpoint import load_checkpoint
from tireid_lite.data.torch_data import training_captions
from tireid_lite.losses.mlm import frequency_weights, mlm_loss
from tireid_lite.losses.tal import tal_loss
from tireid_lite.models.patch_importance import num_kept
from tireid_lite.models.tireid import build_model
from tireid_lite.models.token_selection import SELECTION_KEY
from tireid_lite.text.masking import KeyPhraseMasking, RandomTokenMasking
from tireid_lite.text.phrase_table import phrase_cache_path
from tireid_lite.text.tokenizers import WordTokenizer
from tireid_lite.train.trainer import CRASH_ENV, CRASH_EXIT_CODE, Trainer

CAPTIONS = [
    "a man in a red shirt and black trousers with a blue backpack",
    "the woman wears a white dress and brown shoes",
    "a person with a yellow jacket, grey shorts and a black bag on the left shoulder",
    "a lady in a green coat carrying a red handbag",
]
IMAGE_SIZE = (48, 16)  # patch 8: a 6 x 2 grid, N = 12 patches
NUM_PATCHES = 12
METRICS = ("R1", "R5", "R10", "mAP", "mINP")
PARTITION_KEYS = ("partition_precision", "partition_recall", "partition_f1",
                  "partition_clean", "partition_noisy", "partition_uncertain")


def _setup(**overrides):
    overrides = {"model.kpdm.mask_strategy": "random", "model.kpdm.fmlm_alpha": 0.0, **overrides}  # parts on only when asked
    cfg = apply_overrides(get_profile("cpu"), [
        "model.method=kpdm", "data.image_size=[48, 16]", "model.image_width=32", "model.image_depth=2",
        "model.text_width=32", "model.text_depth=1", "model.embed_dim=32", "model.cross_depth=1",
        "data.max_length=24", "model.warm_start=none", *[f"{k}={v}" for k, v in overrides.items()],
    ])
    tok = WordTokenizer.train(CAPTIONS, max_length=cfg.data.max_length)
    torch.manual_seed(0)
    model = build_model(cfg, tok, num_classes=3)
    ids = tok(CAPTIONS)
    batch = {"images": torch.randn(4, 3, *IMAGE_SIZE), "caption_ids": ids, "pids": torch.tensor([0, 1, 2, 0]),
             "index": torch.tensor([0, 1, 2, 3])}
    if model.caption_hook is not None:
        rng = np.random.default_rng(0)
        drawn = [model.caption_hook(c, row, rng) for c, row in zip(CAPTIONS, ids)]
        batch["mlm_ids"] = torch.stack([d["mlm_ids"] for d in drawn])
        batch["mlm_labels"] = torch.stack([d["mlm_labels"] for d in drawn])
    return cfg, tok, model, batch


def _record_context(model):
    """Record the context tokens the cross-modal module of the masked-language head receives."""
    seen: list[torch.Tensor] = []
    handle = model.heads["kpdm_mlm"].cross.register_forward_hook(lambda mod, args, out: seen.append(args[1].detach()))
    return seen, handle


# --------------------------------------------------------------------------- losses and switches


def test_kpdm_trains_tal_id_and_mlm_instead_of_sdm():
    _, _, model, batch = _setup(**{"model.sdm_loss_weight": 0.3})
    assert model.loss_names() == ["id", "tal_bge", "tal_tse", "mlm"]
    assert isinstance(model.caption_hook, RandomTokenMasking)
    out = model(batch)
    assert "sdm" not in out
    for name in model.loss_names():
        assert out[name].ndim == 0 and torch.isfinite(out[name]), name
    # weights 1 each; sdm_loss_weight plays no part
    assert torch.isclose(out["loss"], out["id"] + out["tal_bge"] + out["tal_tse"] + out["mlm"])
    out["loss"].backward()
    for tower in (model.image_tower, model.text_tower):
        grads = [p.grad for p in tower.parameters() if p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    for head in ("tal", "kpdm_mlm"):
        assert all(p.grad is not None for p in model.heads[head].parameters())


def test_tal_bge_uses_the_global_features():
    _, _, model, batch = _setup()
    with torch.no_grad():
        out = model(batch)
        images = model.image_global(model.encode_image_tokens(batch["images"]))  # the path without attention maps
        texts = model.text_global(model.encode_text_tokens(batch["caption_ids"]), batch["caption_ids"])
    expected = tal_loss(images, texts, batch["pids"], margin=0.1, tau=0.015)
    assert torch.allclose(out["tal_bge"], expected, atol=1e-5)


def test_without_tse_only_the_global_embedding_is_trained_and_scored():
    _, _, model, batch = _setup(**{"model.kpdm.tse": "false"})
    assert model.loss_names() == ["id", "tal_bge", "mlm"] and [v.name for v in model.scorer.views] == ["global"]
    out = model(batch)
    assert "tal_tse" not in out
    model.eval()
    with torch.no_grad():
        assert model.encode_images(batch["images"]).shape == (4, 32)
    text, image = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    assert torch.allclose(model.similarity(text, image), torch.tensor([[0.8, 0.6]]))


def test_without_mlm_weight_there_is_no_language_head_or_hook():
    _, _, model, batch = _setup(**{"model.mlm_loss_weight": 0})
    assert model.loss_names() == ["id", "tal_bge", "tal_tse"] and model.caption_hook is None
    assert torch.isfinite(model(batch)["loss"])


def test_partitioner_needs_kpdm():
    with pytest.raises(ConfigError, match="train.partitioner"):
        _setup(**{"model.method": "irra", "train.partitioner": "tcp"})


# --------------------------------------------------------------------------- what the cross-modal module sees


def test_dropped_patches_never_reach_the_cross_modal_module():
    _, _, model, batch = _setup(**{"model.kpdm.select_ratio": 0.5})
    head = model.heads["kpdm_mlm"]
    seen, handle = _record_context(model)
    with torch.no_grad():
        enc = model.encode_pair(batch)
        before = head(model, enc, batch)["mlm"]
    handle.remove()
    keep = num_kept(NUM_PATCHES, 0.5)
    assert keep == 6 and seen[0].shape == (4, 1 + keep, 32)
    keep_idx = enc.extras[SELECTION_KEY].image_idx  # (B, K)
    for b in range(4):  # the class token, then the kept patches in order
        rows = [0, *(keep_idx[b] + 1).tolist()]
        assert torch.equal(seen[0][b], enc.image_tokens[b, rows])
    dropped = sorted(set(range(NUM_PATCHES)) - set(keep_idx[0].tolist()))
    kept = keep_idx[0].tolist()

    def mlm_with_patch_changed(patch: int) -> torch.Tensor:
        tokens = enc.image_tokens.clone()
        tokens[0, 1 + patch] = torch.randn(tokens.shape[-1], generator=torch.Generator().manual_seed(2))
        changed = dataclasses.replace(enc, image_tokens=tokens, extras=dict(enc.extras))  # the same selection
        with torch.no_grad():
            return head(model, changed, batch)["mlm"]

    assert torch.equal(mlm_with_patch_changed(dropped[0]), before)
    assert not torch.equal(mlm_with_patch_changed(kept[0]), before)


def test_patches_are_chosen_by_cross_layer_importance():
    cfg, _, model, batch = _setup(**{"model.kpdm.select_ratio": 0.5, "model.kpdm.importance_layers": 2})
    with torch.no_grad():
        out = model.image_tower(batch["images"], return_attention=True)
        enc = model.encode_pair(batch)
        model(batch)
    # by hand: CLS -> patch attention averaged over heads and the last two layers, the 6 highest kept
    scores = torch.stack([a.mean(dim=1)[:, 0, 1:] for a in out.attentions]).mean(dim=0).numpy()  # (B, N)
    selection = model.heads["tal"].selector.for_batch(enc, batch["caption_ids"])
    for b in range(4):
        assert selection.image_idx[b].tolist() == sorted(np.argsort(-scores[b], kind="stable")[:6].tolist())


def test_select_ratio_one_keeps_every_patch():
    _, _, model, batch = _setup(**{"model.kpdm.select_ratio": 1.0})
    seen, handle = _record_context(model)
    with torch.no_grad():
        enc = model.encode_pair(batch)
        model.heads["kpdm_mlm"](model, enc, batch)
    handle.remove()
    assert seen[0].shape == (4, 1 + NUM_PATCHES, 32)
    assert torch.equal(seen[0], enc.image_tokens)
    assert enc.extras[SELECTION_KEY].image_idx.tolist() == [list(range(NUM_PATCHES))] * 4


# --------------------------------------------------------------------------- retrieval


def test_similarity_is_the_mean_of_the_global_and_tse_cosines():
    _, _, model, batch = _setup()
    gen = torch.Generator().manual_seed(1)
    text, image = torch.randn(3, 64, generator=gen), torch.randn(5, 64, generator=gen)
    t, i = text.numpy().astype(np.float64), image.numpy().astype(np.float64)

    def cosine(a, b):
        return (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T

    expected = (cosine(t[:, :32], i[:, :32]) + cosine(t[:, 32:], i[:, 32:])) / 2
    assert np.allclose(model.similarity(text, image).numpy(), expected, atol=1e-6)


def test_retrieval_features_are_the_global_and_tse_embeddings():
    _, tok, model, batch = _setup()
    model.eval()
    ids = batch["caption_ids"]
    with torch.no_grad():
        images, texts = model.encode_images(batch["images"]), model.encode_texts(ids)
        enc = model.encode_pair(batch)
        head = model.heads["tal"]
        selection = head.selector.for_batch(enc, ids)
        image_local = head.image_local(enc.image_tokens, selection.image_idx)
        text_local = head.text_local(enc.text_tokens, selection.text_idx, selection.text_valid)
    assert images.shape == texts.shape == (4, 64)
    assert torch.allclose(images[:, :32], enc.image_feats, atol=1e-6)
    assert torch.allclose(texts[:, :32], enc.text_feats, atol=1e-6)
    assert torch.allclose(images[:, 32:], image_local, atol=1e-6)
    assert torch.allclose(texts[:, 32:], text_local, atol=1e-6)
    # the caption selection skips padding and the start and end tokens
    mask = tok.attention_mask(ids)
    for b in range(4):
        chosen = selection.text_idx[b][selection.text_valid[b]]
        end = int(mask[b].sum()) - 1
        assert chosen.numel() > 0 and int(chosen.min()) >= 1 and int(chosen.max()) < end


# --------------------------------------------------------------------------- the masked-language loss


def _mlm_logits(model, batch):
    """The head's vocabulary scores over the class token and the kept patches (gathered here), and its loss."""
    with torch.no_grad():
        enc = model.encode_pair(batch)
        head = model.heads["kpdm_mlm"]
        selection = head.selector.for_batch(enc, batch["caption_ids"])
        rows = torch.cat([torch.zeros(4, 1, dtype=torch.long), selection.image_idx + 1], dim=1)  # (B, 1+K)
        context = enc.image_tokens.gather(1, rows.unsqueeze(-1).expand(-1, -1, enc.image_tokens.shape[-1]))
        return head.logits(model, batch["mlm_ids"], context), head(model, enc, batch)["mlm"]


def test_alpha_zero_is_plain_mlm():
    _, _, model, batch = _setup(**{"model.kpdm.fmlm_alpha": 0.0})
    logits, loss = _mlm_logits(model, batch)
    assert torch.equal(loss, mlm_loss(logits, batch["mlm_labels"]))


def test_fmlm_weights_rare_words_with_the_tokenizer_counts():
    _, tok, model, batch = _setup(**{"model.kpdm.fmlm_alpha": 0.5})
    logits, loss = _mlm_logits(model, batch)
    labels = batch["mlm_labels"]
    expected = mlm_loss(logits, labels, weights=frequency_weights(labels, tok.word_counts, alpha=0.5))
    assert torch.allclose(loss, expected, atol=1e-6)
    assert not torch.allclose(loss, mlm_loss(logits, batch["mlm_labels"]), atol=1e-6)


def test_pair_weights_scale_tal_and_mlm():
    _, _, model, batch = _setup()
    weights = torch.tensor([1.0, 0.0, 0.5, 1.0])  # what the Trainer puts in the batch under a partition
    with torch.no_grad():
        out = model({**batch, "pair_weights": weights})
        enc = model.encode_pair(batch)
        logits, _ = _mlm_logits(model, batch)
    expected = tal_loss(enc.image_feats, enc.text_feats, batch["pids"], weights=weights)
    assert torch.allclose(out["tal_bge"], expected, atol=1e-6)
    labels = batch["mlm_labels"]
    token_weights = weights[:, None].expand(labels.shape)  # (B, L): each masked word weighs its pair's weight
    assert torch.allclose(out["mlm"], mlm_loss(logits, labels, weights=token_weights), atol=1e-6)
    with torch.no_grad():
        unweighted = model(batch)
    assert not torch.allclose(unweighted["tal_bge"], out["tal_bge"])


# --------------------------------------------------------------------------- key-phrase masking


@pytest.fixture
def phrase_model(tmp_path, monkeypatch):
    monkeypatch.setenv("TIREID_CACHE", str(tmp_path / "cache"))
    _, tok, model, _ = _setup(**{"model.kpdm.mask_strategy": "phrase"})
    pairs = [SimpleNamespace(caption=c) for c in CAPTIONS]
    data = SimpleNamespace(dataset=SimpleNamespace(name="CUHK-PEDES"), train_set=SimpleNamespace(pairs=pairs))
    model.prepare(data)
    return tok, model


def test_phrases_are_parsed_once_for_captions_and_their_mirrors(phrase_model, tmp_path):
    _, model = phrase_model
    assert isinstance(model.caption_hook, KeyPhraseMasking)
    table = model.heads["kpdm_mlm"].phrase_table
    left = CAPTIONS[2]
    mirrored = mirror_caption(left)
    assert "right shoulder" in mirrored and mirrored not in CAPTIONS
    assert set(table.phrases) == set(CAPTIONS) | {mirrored}
    assert [p.text for p in table.phrases[mirrored]] == ["yellow jacket", "grey shorts", "black bag", "right shoulder"]
    path = phrase_cache_path("CUHK-PEDES", training_captions(SimpleNamespace(pairs=[SimpleNamespace(caption=c)
                                                                                    for c in CAPTIONS])))
    assert path.is_file() and path.parent == tmp_path / "cache" / "key_phrases"


def test_phrase_masking_masks_only_phrase_tokens(phrase_model):
    tok, model = phrase_model
    caption = CAPTIONS[0]  # [sot] a man in a red shirt and black trousers with a blue backpack [eot]
    ids = tok([caption])[0]
    phrase_positions = {5, 6, 8, 9, 12, 13}  # red shirt, black trousers, blue backpack (by hand)
    rng = np.random.default_rng(0)
    masked = set()
    for _ in range(300):
        labels = model.caption_hook(caption, ids, rng)["mlm_labels"]
        chosen = set(torch.nonzero(labels != -100).flatten().tolist())
        assert chosen <= phrase_positions
        masked |= chosen
    assert masked == phrase_positions


# --------------------------------------------------------------------------- training with the Trainer

TINY = [
    "data.image_size=[32,16]", "data.max_length=32", "data.erasing_p=0.5", "data.flip_p=0.5",
    "model.image_width=32", "model.image_depth=2", "model.image_heads=2",
    "model.text_width=32", "model.text_depth=1", "model.text_heads=2", "model.embed_dim=32",
    "model.cross_depth=1", "model.cross_heads=2",
    "train.batch_size=8", "train.num_epochs=3", "train.warmup_epochs=1", "train.log_every=4",
    "train.lr=0.001", "train.threads=1", "train.epoch_fraction=1", "model.warm_start=none", "model.method=kpdm",
]
STEPS_PER_EPOCH = 6  # 48 pairs / batch 8
FULL_KPDM = ["model.kpdm.mask_strategy=phrase", "model.kpdm.fmlm_alpha=0.5", "data.noise_rate=0.5"]


@pytest.fixture(scope="module", autouse=True)
def _isolated_cache_and_threads(tmp_path_factory):
    """Key phrases go to a temporary cache; runs set train.threads=1, so torch's setting is given back."""
    threads, previous = torch.get_num_threads(), os.environ.get("TIREID_CACHE")
    os.environ["TIREID_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    torch.set_num_threads(threads)
    if previous is None:
        os.environ.pop("TIREID_CACHE", None)
    else:
        os.environ["TIREID_CACHE"] = previous


@pytest.fixture(scope="module")
def cuhk_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cuhk"
    return write_fixture("cuhk-pedes", root, ids_per_split={"train": 8, "val": 5, "test": 5}, images_per_id=3,
                         size=(32, 16))


def tiny_config(root: Path, *extra: str):
    return apply_overrides(get_profile("cpu"), ["data.dataset=cuhk-pedes", f"data.root={root}", *TINY, *extra])


@pytest.fixture(scope="module")
def runs(cuhk_root, tmp_path_factory):
    """Uninterrupted reference runs, made once and read by several tests: {name: (out, metrics, trainer)}."""
    made: dict[str, tuple[Path, dict, Trainer]] = {}

    def get(name: str):
        if name not in made:
            extra = {"tcp": [*FULL_KPDM, "train.partitioner=tcp"], "ccd": [*FULL_KPDM, "train.partitioner=ccd"],
                     "none": []}[name]
            out = tmp_path_factory.mktemp("runs") / name
            trainer = Trainer(tiny_config(cuhk_root, *extra), out)
            made[name] = (out, trainer.fit(), trainer)
        return made[name]

    return get


def _read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _epochs_without_times(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in json.loads(path.read_text())["epochs"]]


@pytest.mark.parametrize("partitioner", ["tcp", "ccd"])
def test_noisy_run_records_detection_scores_and_down_weights_flagged_pairs(runs, partitioner):
    out, _, trainer = runs(partitioner)
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    assert not any(key in epochs[0] for key in PARTITION_KEYS)  # epoch 1 is the warm-up
    noisy = trainer.data.train_set.noisy
    assert noisy.sum() > 0
    for record in epochs[1:]:
        assert all(key in record for key in PARTITION_KEYS)
        assert record["partition_clean"] + record["partition_noisy"] + record["partition_uncertain"] == 48
        for key in ("partition_precision", "partition_recall", "partition_f1"):
            assert 0.0 <= record[key] <= 1.0
    # the weights of the last epoch's partition: 0 for pairs flagged noisy, 1/2 uncertain, 1 clean
    weights = trainer.pair_weights.cpu().numpy()
    last = epochs[-1]
    assert set(np.unique(weights)) <= {0.0, 0.5, 1.0}
    assert (weights == 0).sum() == last["partition_noisy"] and (weights == 0.5).sum() == last["partition_uncertain"]
    assert (weights < 1).sum() > 0  # some pairs are down-weighted
    flagged = weights == 0
    tp = int((flagged & noisy).sum())
    precision = tp / flagged.sum() if flagged.sum() else 1.0
    recall = tp / noisy.sum()
    assert last["partition_precision"] == pytest.approx(precision) and last["partition_recall"] == pytest.approx(recall)


def test_kpdm_trains_end_to_end_and_eval_cli_repeats_the_test_metrics(runs, capsys):
    out, metrics, _ = runs("tcp")
    rows = _read_log(out / "log.csv")
    assert {"tal_bge", "tal_tse", "mlm", "id"} <= set(rows[0]) and "sdm" not in rows[0]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    test = json.loads((out / "test_metrics.json").read_text())
    assert {k: test[k] for k in METRICS} == metrics
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(out / "best.pt")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == pytest.approx(metrics, abs=1e-9)


@pytest.mark.parametrize("partitioner", ["none", "tcp"])
def test_resume_after_a_crash_ends_where_the_uninterrupted_run_does(runs, cuhk_root, tmp_path, partitioner):
    ref_out, ref_metrics, _ = runs(partitioner)
    extra = [] if partitioner == "none" else [*FULL_KPDM, f"train.partitioner={partitioner}"]
    config_file = save_config(tiny_config(cuhk_root, *extra), tmp_path / "cfg.yaml")
    out = tmp_path / "crashed"
    env = {**os.environ, CRASH_ENV: str(STEPS_PER_EPOCH + 3), "TIREID_PROGRESS": "0"}  # the middle of epoch 2
    result = subprocess.run(
        [sys.executable, "-m", "tireid_lite.cli", "train", "--config", str(config_file), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == CRASH_EXIT_CODE, result.stderr
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    # the partition of epoch 2 is recomputed from last.pt at resume, not read from it
    assert Trainer(tiny_config(cuhk_root, *extra), out, resume=True).fit() == ref_metrics
    assert _read_log(out / "log.csv") == _read_log(ref_out / "log.csv")
    assert _epochs_without_times(out / "metrics.json") == _epochs_without_times(ref_out / "metrics.json")
    resumed, uninterrupted = load_checkpoint(out / "last.pt"), load_checkpoint(ref_out / "last.pt")
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name


def test_eval_scores_a_checkpoint_with_the_mean_of_both_cosines(runs):
    from tireid_lite.data.build import build_data
    from tireid_lite.models.trained import load_trained

    out, metrics, _ = runs("tcp")
    trained = load_trained(out / "best.pt")
    data = build_data(trained.cfg, trained.tokenizer, train=False)
    gallery, queries = data.gallery("test"), data.queries("test")
    with torch.no_grad():
        images = trained.model.encode_images(torch.stack([gallery[i]["images"] for i in range(len(gallery))]))
        texts = trained.model.encode_texts(queries.caption_ids)
    sim = ((F.normalize(texts[:, :32], dim=-1) @ F.normalize(images[:, :32], dim=-1).t())
           + (F.normalize(texts[:, 32:], dim=-1) @ F.normalize(images[:, 32:], dim=-1).t())) / 2
    order = torch.argsort(-sim, dim=1, stable=True)
    top1 = torch.from_numpy(gallery.pids)[order[:, 0]] == torch.from_numpy(queries.pids)
    assert 100.0 * top1.float().mean().item() == pytest.approx(metrics["R1"], abs=1e-6)


def test_kpdm_defaults_turn_on_phrase_masking_and_fmlm():
    cfg = get_profile("cpu")
    assert (cfg.model.kpdm.mask_strategy, cfg.model.kpdm.fmlm_alpha, cfg.model.kpdm.select_ratio) == ("phrase", 0.5, 0.5)
    _, _, model, _ = _setup(**{"model.kpdm.mask_strategy": "phrase", "model.kpdm.fmlm_alpha": 0.5})
    assert isinstance(model.caption_hook, KeyPhraseMasking)


def test_a_branch_from_the_shared_warmup_ends_where_the_run_from_scratch_does(runs, cuhk_root, tmp_path):
    ref_out, ref_metrics, _ = runs("tcp")
    warmup = tmp_path / "warmup"
    Trainer(tiny_config(cuhk_root, *FULL_KPDM, "train.partitioner=none"), warmup, keep_epochs=(1,)).fit()
    assert load_checkpoint(warmup / "epoch1.pt")["epoch"] == 1
    out = tmp_path / "branch"
    branch = Trainer(tiny_config(cuhk_root, *FULL_KPDM, "train.partitioner=tcp"), out, branch_from=warmup / "epoch1.pt")
    assert branch.epoch == 1 and branch.step == STEPS_PER_EPOCH
    assert branch.fit() == ref_metrics
    assert _read_log(out / "log.csv") == _read_log(ref_out / "log.csv")  # the warm-up's rows come with it
    assert _epochs_without_times(out / "metrics.json") == _epochs_without_times(ref_out / "metrics.json")
    branched, scratch = load_checkpoint(out / "last.pt"), load_checkpoint(ref_out / "last.pt")
    for name, tensor in scratch["model"].items():
        assert torch.equal(branched["model"][name], tensor), name


def test_branching_is_refused_past_the_warmup_or_across_other_settings(runs, cuhk_root, tmp_path):
    ref_out, _, _ = runs("tcp")
    tcp = tiny_config(cuhk_root, *FULL_KPDM, "train.partitioner=ccd")
    with pytest.raises(ConfigError, match="past the partition warm-up"):
        Trainer(tcp, tmp_path / "a", branch_from=ref_out / "last.pt")
    other = tiny_config(cuhk_root, *FULL_KPDM, "train.partitioner=ccd", "train.lr=0.002")
    warmup = tmp_path / "warmup"
    Trainer(tiny_config(cuhk_root, *FULL_KPDM, "train.partitioner=none", "train.num_epochs=1"), warmup).fit()
    with pytest.raises(ConfigError, match=r"differs in more than the partitioner \(train.lr"):
        Trainer(other, tmp_path / "b", branch_from=warmup / "last.pt")
    with pytest.raises(ConfigError, match="no such checkpoint"):
        Trainer(tcp, tmp_path / "c", branch_from=tmp_path / "missing.pt")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
