"""An estimate of peak GPU memory for one training step of the gpu recipes (ViT-B/16 + CLIP text, 384x128).

Nothing here has been measured on a GPU: the figures come from the sizes of
the parameters and of the activations a step keeps for its backward pass, so
read them as an estimate to pick a batch size, not as a measurement.

* **Training state**, per parameter: fp32 weight 4 B + fp32 gradient 4 B +
  Adam's two moments 8 B + the bf16 copy autocast keeps of each weight 2 B = 18 B.
* **Activations** of a transformer layer with T tokens of width W and ``a``
  heads, for a batch of B, kept in bf16 (Korthikanti et al., 2022, "Reducing
  Activation Recomputation in Large Transformer Models", eq. 1):
  ``T * B * W * (34 + 5 * a * T / W)`` bytes. The second term holds the attention
  scores; fused attention (SDPA, what the towers use) does not keep them, so it
  counts only where a method reads the attention maps (RDE's and KPDM's token
  selection). With ``model.grad_checkpointing`` a tower keeps only each layer's
  bf16 input (``2 * T * B * W``) plus one layer's activations while recomputing.
* **MLM logits**: ``B * L * V`` scores over CLIP's 49,408 words, about 10 bytes
  each (bf16 output, fp32 copy, the softmax kept for the backward pass).

Not counted: the CUDA context and the allocator's slack (add about 1 GiB), the
evaluation pass (run under ``no_grad``) and the data loader's pinned buffers.
The methods covered are those whose recipe traces an architecture (irra, rde,
kpdm, bilma); CADA's decoder and the part-level heads are the kit's own
reading and are not estimated. Shown in notebook ``09_gpu_training``.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
STATE_BYTES_PER_PARAM = 4 + 4 + 8 + 2  # weight, gradient, Adam's m and v, autocast's bf16 copy
LOGIT_BYTES = 10  # bf16 output + fp32 copy + kept softmax, per vocabulary score
ESTIMATED_METHODS = ("irra", "rde", "kpdm", "bilma")


@dataclass(frozen=True)
class Arch:
    """The sizes a step's memory depends on (defaults: the recipes' ViT-B/16 + CLIP text at 384x128)."""

    image_size: tuple[int, int] = (384, 128)
    patch: int = 16
    image_width: int = 768
    image_layers: int = 12
    image_heads: int = 12
    text_length: int = 77
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    vocab: int = 49408
    embed: int = 512  # joint embedding width (CLIP ViT-B/16's projection)
    cross_layers: int = 4  # IRRA's cmt_depth
    cross_heads: int = 8
    classes: int = 11003  # CUHK-PEDES training identities
    tse_width: int = 1024  # RDE's TSE
    select_ratio: float = 0.5  # KPDM's kept share of image patches (RDE: 0.3, which only drops its own cost)
    parts: int = 10  # BiLMa's part classes (the kit's parsing label set, order of magnitude)

    @property
    def image_tokens(self) -> int:
        return 1 + (self.image_size[0] // self.patch) * (self.image_size[1] // self.patch)


@dataclass(frozen=True)
class MemoryEstimate:
    method: str
    batch_size: int
    grad_checkpointing: bool
    params: int  # parameters trained
    state_bytes: int  # weights, gradients, Adam's moments, bf16 copies
    activation_bytes: int  # what the step keeps for its backward pass

    @property
    def total_gib(self) -> float:
        return (self.state_bytes + self.activation_bytes) / GIB


def layer_params(width: int) -> int:
    """One pre-norm transformer layer, MLP ratio 4: attention 4W^2 + 4W, MLP 8W^2 + 5W, two LayerNorms 4W."""
    return 12 * width * width + 13 * width


def layer_activation_bytes(tokens: int, batch: int, width: int, heads: int, scores: bool) -> int:
    """Bytes one layer keeps for its backward pass in bf16 (Korthikanti et al.'s count, see the module docstring)."""
    per_token = 34 * width + (5 * heads * tokens if scores else 0)
    return tokens * batch * per_token


def tower_activation_bytes(tokens: int, batch: int, width: int, heads: int, layers: int, *, scores: bool,
                           checkpointing: bool) -> int:
    one = layer_activation_bytes(tokens, batch, width, heads, scores)
    if checkpointing:
        return layers * 2 * tokens * batch * width + one
    return layers * one


def param_count(method: str, arch: Arch = Arch()) -> int:
    """Parameters of ``method``'s model at ``arch`` (towers, then its heads)."""
    _check(method)
    a, e = arch, arch.embed
    image = (a.image_width * 3 * a.patch**2 + a.image_width + a.image_tokens * a.image_width + 4 * a.image_width
             + a.image_layers * layer_params(a.image_width) + a.image_width * e)
    text = (a.vocab * a.text_width + a.text_length * a.text_width + 2 * a.text_width
            + a.text_layers * layer_params(a.text_width) + a.text_width * e)
    cross = 4 * e + 4 * e * e + 4 * e + a.cross_layers * layer_params(e) + 2 * e
    mlm = e * e + e + 2 * e + e * a.vocab + a.vocab
    identity = e * a.classes + a.classes
    half = a.tse_width // 2
    tse = 2 * (e * a.tse_width + a.tse_width + e * half + half + 2 * half + half * a.tse_width + a.tse_width)
    heads = {"irra": identity + cross + mlm, "rde": tse, "kpdm": tse + cross + mlm,
             "bilma": identity + cross + mlm + (e * e + e + 2 * e + e * a.parts + a.parts) + a.image_width}[method]
    return image + text + heads  # bilma's last term: the image tower's mask token


def estimate_memory(method: str, batch_size: int, *, grad_checkpointing: bool = False,
                    arch: Arch = Arch()) -> MemoryEstimate:
    """Peak memory of one training step of ``method`` at ``batch_size`` (see the module docstring)."""
    _check(method)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    a, b, ckpt = arch, batch_size, grad_checkpointing
    scores = method in ("rde", "kpdm")  # token selection reads both towers' attention maps

    def image(tokens: int = a.image_tokens) -> int:
        return tower_activation_bytes(tokens, b, a.image_width, a.image_heads, a.image_layers, scores=scores,
                                      checkpointing=ckpt)

    def text(with_scores: bool = scores) -> int:
        return tower_activation_bytes(a.text_length, b, a.text_width, a.text_heads, a.text_layers,
                                      scores=with_scores, checkpointing=ckpt)

    def cross(queries: int) -> int:  # the cross-attention, then the cross layers at the joint width
        return 16 * queries * b * a.embed + a.cross_layers * layer_activation_bytes(queries, b, a.embed,
                                                                                   a.cross_heads, False)

    logits = b * a.text_length * a.vocab * LOGIT_BYTES
    activations = {
        "irra": image() + 2 * text() + cross(a.text_length) + logits,  # caption and masked caption
        "rde": image() + text(),
        "kpdm": image() + text() + text(False) + cross(a.text_length) + logits,  # + masked caption over kept patches
        "bilma": 2 * image() + 2 * text() + cross(a.text_length) + cross(a.image_tokens) + logits,  # + masked image
    }[method]
    params = param_count(method, arch)
    return MemoryEstimate(method, b, ckpt, params, params * STATE_BYTES_PER_PARAM, activations)


def memory_table(batch_sizes: tuple[int, ...] = (32, 64, 128), methods: tuple[str, ...] = ESTIMATED_METHODS,
                 arch: Arch = Arch()) -> list[dict[str, object]]:
    """One row per method and batch size: parameters, GiB without and with gradient checkpointing."""
    rows = []
    for method in methods:
        for b in batch_sizes:
            plain = estimate_memory(method, b, arch=arch)
            ckpt = estimate_memory(method, b, grad_checkpointing=True, arch=arch)
            rows.append({"method": method, "batch": b, "params_M": round(plain.params / 1e6, 1),
                         "state_GiB": round(plain.state_bytes / GIB, 2),
                         "peak_GiB": round(plain.total_gib, 1), "peak_GiB_checkpointing": round(ckpt.total_gib, 1)})
    return rows


def _check(method: str) -> None:
    if method not in ESTIMATED_METHODS:
        raise ValueError(f"no memory estimate for method {method!r}; estimated: {', '.join(ESTIMATED_METHODS)} "
                         "(CADA's and the part-level heads are the kit's own reading)")
