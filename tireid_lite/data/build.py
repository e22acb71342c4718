"""The data side of a run, built from a config: dataset, tokenizer, noise and torch datasets.

:func:`build_data` reads the dataset named by ``cfg.data`` (the cached
SynthPEDES when ``data.dataset`` is ``synth`` and ``data.root`` is empty),
trains the word tokenizer on the training captions (or loads CLIP's from
``model.pretrained_dir``), injects caption noise when ``data.noise_rate > 0``
and wraps everything in torch datasets. The training loader that batches
them lives in :mod:`tireid_lite.train.build`. Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from tireid_lite.config import Config
from tireid_lite.data.noise import NoiseInjection, inject_noise
from tireid_lite.data.patch_labels import ParsingMaps
from tireid_lite.data.readers import read_dataset
from tireid_lite.data.records import PedesDataset
from tireid_lite.data.torch_data import GalleryDataset, QueryDataset, TrainPairsDataset
from tireid_lite.data.transforms import build_transforms
from tireid_lite.errors import ConfigError
from tireid_lite.text.tokenizers import CLIPBPETokenizer, Tokenizer, WordTokenizer


class PartMapFallbackWarning(UserWarning):
    """Training images without a parsing map: BiLMa's semantic MIM target falls back to the body-layout prior."""


def part_maps_for_training(dataset: PedesDataset, identities: int = 0) -> ParsingMaps:
    """The part maps of ``dataset``'s training images (SemMIM's target), with one
    :class:`PartMapFallbackWarning` when some real training images have no map under
    ``<root>/parsing/``: for those the target is a fixed body-layout prior, not the image's parts."""
    maps = ParsingMaps.for_dataset(dataset)
    if dataset.name == "synth":
        return maps
    records = dataset.split("train")
    if identities:
        keep = {pid for pid in sorted({r.pid for r in records})[:identities]}
        records = [r for r in records if r.pid in keep]
    missing = [r.path for r in records if not maps.has_map(r.path)]
    if missing:
        share = (f"none of the {len(records)} training images has" if len(missing) == len(records)
                 else f"only {len(records) - len(missing)} of the {len(records)} training images have")
        warnings.warn(
            f"{share} a parsing map in {maps.root}/ (the first missing: "
            f"{maps.path(missing[0])}); BiLMa's semantic MIM target uses a fixed body-layout prior for the "
            f"{len(missing)} without one, which is not SemMIM. Put the human-parsing maps there (see "
            "data_setup/README.md), or set model.bilma.mim_target=rgb",
            PartMapFallbackWarning, stacklevel=2,
        )
    return maps


@dataclass
class Data:
    """What a run reads: the dataset, its tokenizer, the training set and the evaluation sets.

    ``train_set`` is ``None`` when the data was built for evaluation only.
    Gallery and query sets are built on first use and kept.
    """

    dataset: PedesDataset
    tokenizer: Tokenizer
    image_size: tuple[int, int]
    train_set: TrainPairsDataset | None = None
    noise: NoiseInjection | None = None
    train_identities: int = 0  # the first N training identities only (0 = all), as data.train_identities
    cache_images: bool = False  # keep evaluation images in memory after their first use (data.cache_images)
    _eval_sets: dict[tuple[str, str], Dataset] = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        """The number of training identities (the ID classifier's outputs)."""
        return self.train_identities or len({r.pid for r in self.dataset.split("train")})

    def has_split(self, split: str) -> bool:
        return self.dataset.has_split(split)

    def gallery(self, split: str) -> GalleryDataset:
        """Every image of ``split`` (test-time transform), in file order."""
        key = ("gallery", split)
        if key not in self._eval_sets:
            self._eval_sets[key] = GalleryDataset(self.dataset, split, build_transforms(self.image_size, train=False),
                                                  cache_images=self.cache_images)
        return self._eval_sets[key]

    def queries(self, split: str) -> QueryDataset:
        """Every caption of ``split``, tokenized."""
        key = ("queries", split)
        if key not in self._eval_sets:
            self._eval_sets[key] = QueryDataset(self.dataset, split, self.tokenizer)
        return self._eval_sets[key]


def dataset_root(cfg: Config) -> Path:
    """Where the dataset lives: ``data.root``, or the cached SynthPEDES for ``synth`` with no root."""
    if cfg.data.root:
        return Path(cfg.data.root).expanduser()
    if cfg.data.dataset == "synth":
        from tireid_lite.data.synth import ensure_synth
        from tireid_lite.data.synth.knobs import knobs_from_config

        return Path(
            ensure_synth(
                ids_train=cfg.data.synth_ids_train,
                ids_val=cfg.data.synth_ids_val,
                ids_test=cfg.data.synth_ids_test,
                images_per_id=cfg.data.synth_images_per_id,
                size=tuple(cfg.data.image_size),
                seed=cfg.data.synth_seed,
                **knobs_from_config(cfg.data),
            )
        )
    raise ConfigError(
        f"config key 'data.root' is empty but data.dataset is {cfg.data.dataset!r}; "
        "give the dataset's root with --data-root DIR (see data_setup/README.md)"
    )


def build_tokenizer(cfg: Config, dataset: PedesDataset) -> Tokenizer:
    """The word tokenizer trained on the training captions, or CLIP's BPE from ``model.pretrained_dir``."""
    if cfg.data.tokenizer == "clip":
        if not cfg.model.pretrained_dir:
            raise ConfigError(
                "config key 'data.tokenizer' is 'clip' but 'model.pretrained_dir' is empty; "
                "set model.pretrained_dir to a local CLIP checkpoint or use data.tokenizer=word"
            )
        return CLIPBPETokenizer.from_pretrained(cfg.model.pretrained_dir, max_length=cfg.data.max_length)
    captions = [caption for record in dataset.split("train") for caption in record.captions]
    return trained_word_tokenizer(captions, max_length=cfg.data.max_length)


# Word tokenizers trained in this process, by (digest of the captions, max_length): a notebook that
# trains many runs on one dataset builds the vocabulary once (about a second each time otherwise).
_WORD_TOKENIZERS: dict[tuple[str, int], WordTokenizer] = {}


def trained_word_tokenizer(captions: list[str], *, max_length: int) -> WordTokenizer:
    """:meth:`WordTokenizer.train` on ``captions``, reusing the tokenizer already trained in this process
    on the same captions (a tokenizer is not changed after training, so runs can share it)."""
    digest = hashlib.sha256("\x00".join(captions).encode("utf-8")).hexdigest()
    key = (digest, int(max_length))
    if key not in _WORD_TOKENIZERS:
        _WORD_TOKENIZERS[key] = WordTokenizer.train(captions, max_length=max_length)
    return _WORD_TOKENIZERS[key]


def build_data(
    cfg: Config, tokenizer: Tokenizer | None = None, *, train: bool = True, part_maps: bool = False
) -> Data:
    """Read the dataset of ``cfg`` and build its tokenizer (unless given) and torch datasets.

    ``train=False`` skips the training set (evaluation from a checkpoint, whose
    tokenizer is passed in). ``part_maps=True`` gives each training item its
    part map (what BiLMa's semantic MIM target reads; the Trainer asks the
    method whether it needs them): SynthPEDES's own, else ``<root>/parsing/``
    with the body-layout prior for images without a map. Taught in ``02_baseline_irra``.
    """
    dataset = read_dataset(cfg.data.dataset, dataset_root(cfg))
    if tokenizer is None:
        tokenizer = build_tokenizer(cfg, dataset)
    size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    data = Data(dataset=dataset, tokenizer=tokenizer, image_size=size, train_identities=cfg.data.train_identities,
                cache_images=cfg.data.cache_images)
    if train:
        try:
            pairs = dataset.train_pairs(cfg.data.train_identities)
        except ValueError as err:
            raise ConfigError(f"data.train_identities={cfg.data.train_identities}: {err}") from err
        if cfg.data.noise_rate > 0:
            data.noise = inject_noise(pairs, cfg.data.noise_rate, cfg.data.noise_seed)
        transform = build_transforms(size, train=True, flip=False, pad=cfg.data.pad, erase_p=cfg.data.erasing_p)
        data.train_set = TrainPairsDataset(dataset, tokenizer, transform, flip_p=cfg.data.flip_p, noise=data.noise,
                                           cache_images=cfg.data.cache_images,
                                           part_maps=part_maps_for_training(dataset, cfg.data.train_identities)
                                           if part_maps else None,
                                           identities=cfg.data.train_identities, text_aug=cfg.data.text_aug)
    return data
