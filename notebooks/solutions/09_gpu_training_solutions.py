# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Solutions to the exercises (for instructors)
#
# The exercises that close `09_gpu_training`, solved with 09's own cpu setting: a CUHK-PEDES fixture at
# 384x128 (4 training identities, 2 images each) and a tiny random CLIP checkpoint, both written here, trained
# for two short epochs of batch 8. The numbers check the recipes' code paths, not the papers. Exercise 3 needs
# a GPU, CUHK-PEDES and CLIP ViT-B/16: its code runs only when all three are there, and says so otherwise.
#
# **Run time on cpu**: three short trainings of the tiny CLIP at 384x128 and a timing loop, about a minute on
# a shared 2-core machine at load 4-5. `quick=True` trains one step per run, builds the RDE model without
# training it and times one pass per setting: the code runs, the timings mean nothing.

# %%
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from transformers.utils import logging as hf_logging

from tireid_lite.config import apply_overrides, load_recipe, module_lrs, no_decay_rules
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.models.tiny_clip import write_tiny_clip
from tireid_lite.notebook import resolve_output_dir, resolve_profile, save_metrics
from tireid_lite.train.memory import estimate_memory
from tireid_lite.train.trainer import Trainer

hf_logging.disable_progress_bar()  # save_pretrained's bar for the tiny CLIP would be a widget in the outputs

# %%
NOTEBOOK = "09_gpu_training_solutions"
PAPER_IRRA_R1 = 73.38  # IRRA's CUHK-PEDES R@1 (the recipe's header)

# %% tags=["parameters"]
profile = ""
output_dir = ""
seed = 0
timing_steps = 10  # forward + backward passes timed per setting in exercise 2
data_root = ""  # exercise 3: CUHK-PEDES's root (data_setup/README.md)
clip_dir = ""  # exercise 3: the local CLIP ViT-B/16 folder (data_setup/get_clip.py)
quick = False

# %% tags=["injected-parameters"]
# Parameters
profile = "cpu"


# %%
profile = resolve_profile(profile)
output_dir = resolve_output_dir(output_dir, NOTEBOOK)
work = Path(tempfile.mkdtemp(prefix="tireid-09s-"))  # the fixture, the tiny CLIP and the runs
root = write_fixture("cuhk-pedes", work / "cuhk", ids_per_split={"train": 4, "val": 2, "test": 4},
                     images_per_id=2, size=(384, 128), seed=seed)
clip = write_tiny_clip(work / "clip", seed=seed)
# 09's cpu setting: epochs of two steps of batch 8, the rest is the recipe's
short = [f"data.root={root.resolve()}", f"model.pretrained_dir={clip}", f"train.seed={seed}",
         *(["train.num_epochs=1", "train.epoch_fraction=0.5"] if quick else ["train.num_epochs=2"]), "train.warmup_epochs=0.5", "train.batch_size=8",
         "train.log_every=1", "data.num_workers=0", "train.amp=bf16", "train.eval_every=1"]
steps_timed = 1 if quick else timing_steps
# transformers renamed the switch the text tower uses for checkpointing; its notice would print a site path
warnings.filterwarnings("ignore", message=".*gradient_checkpointing_enable.*deprecated", category=FutureWarning)
print(f"profile: {profile}; seed {seed}; every run: the recipe with {short[3:]}")


def trainer_for(recipe: str, name: str, extra: list[str] = ()) -> Trainer:
    """09's Trainer for ``recipe`` on the fixture and the tiny CLIP, in its own run folder."""
    return Trainer(apply_overrides(load_recipe(recipe), [*short, *extra]), work / name)


# %% [markdown]
# ## Exercise 1: the RDE recipe's heads and optimiser groups

# %% tags=["nbval-ignore-output"]
rde = trainer_for("rde", "rde")
rde_metrics = None if quick else rde.fit()

# %%
model = rde.raw_model
print(f"method {rde.cfg.model.method!r}; heads:")
heads = pd.DataFrame([{"head": key, "class": type(head).__name__,
                       "parameters": sum(p.numel() for p in head.parameters())}
                      for key, head in model.heads.items()])
print(heads.to_string(index=False))
if rde_metrics is not None:
    print(f"trained {rde.step} steps; test R@1 {rde_metrics['R1']:.2f} (a fixture of 4 test identities)")

names = {id(p): name for name, p in model.named_parameters()}


def group_table(groups: list[dict]) -> pd.DataFrame:
    """One row per optimiser group: its lr (before the schedule), weight decay, size and what it holds."""
    rows = []
    for group in groups:
        held = [names[id(p)] for p in group["params"]]
        tops = sorted({".".join(n.split(".")[:3 if n.startswith("heads.") else 2]) for n in held})
        rows.append({"lr": group.get("initial_lr", group["lr"]), "weight_decay": group["weight_decay"],
                     "tensors": len(held), "parameters": sum(p.numel() for p in group["params"]),
                     "holds": ", ".join(tops[:4]) + (f", ... ({len(tops)} modules)" if len(tops) > 4 else "")})
    return pd.DataFrame(rows)


t = rde.cfg.train
with_module_lr = group_table(rde.optimizer.param_groups)
without_module_lr = group_table(model.parameter_groups(
    t.lr, t.weight_decay, t.new_module_lr_factor, t.pretrained_lr_factor, bias_lr_factor=t.bias_lr_factor,
    no_decay=no_decay_rules(t.no_decay), module_lr=()))
pd.set_option("display.max_colwidth", 80)
pd.set_option("display.width", 160)
print(f"\ntrain.module_lr = {t.module_lr!r} -> {module_lrs(t.module_lr)}; lr {t.lr:g}, heads x{t.new_module_lr_factor:g}, "
      f"biases x{t.bias_lr_factor:g}")
print("the Trainer's optimiser groups:")
print(with_module_lr.to_string(index=False))
print("\nthe same model's groups with module_lr emptied:")
print(without_module_lr.to_string(index=False))
tse_params = [n for n in names.values() if "_tse." in n]
tse_groups = with_module_lr[with_module_lr["holds"].str.contains("_tse", regex=False)]
print(f"\n{len(tse_params)} parameter tensors hold '_tse.' in their name; with module_lr they learn at "
      f"{sorted(set(tse_groups['lr']))}")

# %% [markdown]
# **Answer.** The `rde` recipe builds method `kpdm` with KPDM's own parts switched off, and the model has a
# single head: `tal`, an `AlignmentHead` (TAL with token selection) of 1.15 M parameters; no identity
# classifier and no MLM head (both weights are 0 in the recipe). Every trained parameter of that head sits in
# its token-selection layers (`heads.tal.image_tse`, `heads.tal.text_tse`: the 16 tensors whose names hold
# `_tse.`). The optimiser has 4 groups: the towers' weights at lr 1e-05 with weight decay 4e-05 (their
# LayerNorm weights included: `no_decay: bias` exempts only biases), the towers' biases at 2e-05 (x2) without
# decay, and the head's weights and biases at 0.001, with and without decay. `module_lr = "_tse.=0.001"` is
# what sets that last lr: with it emptied the same two head groups learn at 5e-05 (lr x 5, the new-module
# factor). So here it creates no group of its own (the whole head is TSE); it raises the head's lr 20-fold,
# to 100 times the towers', and it overrides the bias factor for the head's biases. The 4-step run trains
# (test R@1 25.00 on the fixture's 4 test identities), which says only that the path works. The lr column is
# each group's `initial_lr`; `param_groups[i]["lr"]` is already scaled by the warmup's first factor.

# %% [markdown]
# ## Exercise 2: gradient checkpointing
#
# The same `irra` run twice, with and without `model.grad_checkpointing=true`, same seed and batches. Then
# the step's forward and backward passes are timed on one batch (no optimiser step, so the weights stay put),
# alternating the two models so that the machine's load hits both alike.

# %% tags=["nbval-ignore-output"]
plain = trainer_for("irra", "irra_plain")
plain_metrics = plain.fit()
ckpt = trainer_for("irra", "irra_ckpt", ["model.grad_checkpointing=true"])
ckpt_metrics = ckpt.fit()

# %%
log_plain = pd.read_csv(work / "irra_plain" / "log.csv")
log_ckpt = pd.read_csv(work / "irra_ckpt" / "log.csv")
loss_gap = float((log_plain["loss"] - log_ckpt["loss"]).abs().max())
r1_gap = float(ckpt_metrics["R1"] - plain_metrics["R1"])
print(pd.DataFrame({"plain": plain_metrics, "grad_checkpointing": ckpt_metrics}).T[["R1", "R5", "mAP"]]
      .round(4).to_string())
print(f"test R@1 difference: {r1_gap:+.4f} points; largest difference of the logged losses over "
      f"{len(log_plain)} steps: {loss_gap:.2e}")

batch = next(iter(plain.loader))
batch = {key: value.to(plain.device) for key, value in batch.items()}


def step_seconds(trainer: Trainer) -> float:
    """One forward + backward pass of the training step on ``batch``, in seconds."""
    net = trainer.raw_model.train()
    started = time.perf_counter()
    with trainer._autocast():
        out = net(batch)
    out["loss"].backward()
    net.zero_grad(set_to_none=True)
    return time.perf_counter() - started


if not quick:
    step_seconds(plain), step_seconds(ckpt)  # a first pass each, not timed (allocations)
times = {"plain": [], "grad_checkpointing": []}
for _ in range(steps_timed):
    times["plain"].append(step_seconds(plain))
    times["grad_checkpointing"].append(step_seconds(ckpt))
median = {name: float(pd.Series(values).median()) for name, values in times.items()}
slowdown = median["grad_checkpointing"] / median["plain"]
print(f"forward + backward on a batch of {len(batch['images'])}, median of {steps_timed}: plain "
      f"{1000 * median['plain']:.0f} ms, checkpointing {1000 * median['grad_checkpointing']:.0f} ms "
      f"-> {slowdown:.2f}x")

# %% [markdown]
# **Answer.** No: with gradient checkpointing the test R@1 is the same (25.0 both, difference +0.0000
# points, as are R@5 and mAP) and the logged losses of the 4 steps are identical (largest difference 0.00e+00):
# on this CPU the recomputed layers give the same floats, and torch's checkpoint replays the random state so
# dropout draws repeat; on a GPU expect differences of float rounding at most. A step costs more: the forward
# and backward pass of a batch of 8 took 832 ms against 740 ms, 1.13x (median of 10, alternating the two
# models, load average about 4.5 on a shared 2-core machine; three earlier runs of the same cell gave 1.11x to
# 1.27x). The expected cost is one more forward pass of the towers, up to about 1.3x when the towers make most of the step; with a tiny CLIP the parts that are not
# recomputed (heads, losses, per-operation overhead) weigh more, so the measured overhead is smaller. The
# memory it saves is section 4's `peak_GiB_checkpointing` column, which only a GPU can measure.

# %% [markdown]
# ## Exercise 3: the IRRA recipe on CUHK-PEDES, on a GPU
#
# The full recipe (60 epochs of batch 64 with CLIP ViT-B/16) with the peak memory of the training counted by
# CUDA. It needs a CUDA device, CUHK-PEDES (`data_root`) and CLIP ViT-B/16 (`clip_dir`); without them it
# prints why it did not run.

# %% tags=["nbval-ignore-output"]
estimate = estimate_memory("irra", load_recipe("irra").train.batch_size)
missing = [why for why, absent in (("no CUDA device", not torch.cuda.is_available()),
                                   ("no data_root (CUHK-PEDES)", not data_root),
                                   ("no clip_dir (CLIP ViT-B/16)", not clip_dir)) if absent]
gpu_R1 = gpu_peak_GiB = None
if missing or quick:
    print(f"exercise 3 was not run here: {'; '.join(missing) or 'quick mode'}. It trains the irra recipe "
          f"on the real data for 60 epochs (hours on one GPU); run this notebook on a GPU with data_root and clip_dir set.")
else:
    cfg = apply_overrides(load_recipe("irra"), [f"data.root={Path(data_root).resolve()}",
                                                f"model.pretrained_dir={Path(clip_dir).resolve()}", f"train.seed={seed}"])
    torch.cuda.reset_peak_memory_stats()
    gpu = Trainer(cfg, output_dir / "irra_cuhk")
    gpu_R1 = float(gpu.fit()["R1"])
    gpu_peak_GiB = torch.cuda.max_memory_allocated() / 2**30
    print(f"test R@1 {gpu_R1:.2f} against the paper's {PAPER_IRRA_R1} ({gpu_R1 - PAPER_IRRA_R1:+.2f} points)")
    print(f"peak memory allocated {gpu_peak_GiB:.1f} GiB")
print(f"section 4's estimate for irra at batch {estimate.batch_size}: {estimate.total_gib:.1f} GiB "
      f"({estimate.params / 1e6:.1f} M parameters; state {estimate.state_bytes / 2**30:.2f} GiB, "
      f"activations {estimate.activation_bytes / 2**30:.1f} GiB), plus about 1 GiB of CUDA context")

# %% [markdown]
# **Answer.** Not measured: this notebook's committed run had no GPU, no CUHK-PEDES and no CLIP weights, so
# the cell above printed why and gave only the estimate. On a GPU, compare two things. (1) The test R@1
# against the paper's 73.38: one seed moves R@1 by a few tenths, so a gap under about one point is a
# reproduction; a larger gap is worth reading against the recipe's "kit:" lines (bf16 autocast over fp32
# weights, the warmup per step, the head LayerNorms at 5x). (2) `torch.cuda.max_memory_allocated()` against
# the estimate printed above, 11.4 GiB at batch 64 (the allocator's count leaves out the CUDA context, which `nvidia-smi` shows
# on top): the estimate counts the state and the activations kept for the backward pass, not the allocator's
# fragmentation or the transient buffers of attention and of the MLM scores' softmax, so the measured peak
# should be near it and somewhat above; a peak far below means the activation count is too generous
# (e.g. autocast keeping fewer copies), far above means something the estimate leaves out.

# %%
shutil.rmtree(work, ignore_errors=True)
_ = save_metrics(output_dir, {
    "quick": quick,
    "ex1_heads": ",".join(heads["head"]),
    "ex1_tse_lr": float(tse_groups["lr"].max()) if len(tse_groups) else 0.0,
    "ex1_groups": len(with_module_lr),
    "ex2_R1_gap": r1_gap,
    "ex2_loss_gap": loss_gap,
    "ex2_slowdown": slowdown,
    "ex3_ran": gpu_R1 is not None,
    "ex3_estimate_GiB": float(estimate.total_gib),
})
