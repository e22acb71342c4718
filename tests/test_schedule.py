"""Unit tests for tireid_lite.train.schedule: warm-up + cosine, on values worked out by hand."""

from __future__ import annotations

import io

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from tireid_lite.errors import ConfigError
from tireid_lite.train.schedule import WarmupCosine

# total 10 steps, warm-up 4, start factor 0.1, floor 0:
#   warm-up: 0.1 + 0.9 * t / 4     -> 0.1, 0.325, 0.55, 0.775
#   cosine over the 6 remaining steps: (1 + cos(pi * (t - 4) / 6)) / 2
#     t=4: 1;  t=5: (1 + cos(pi/6)) / 2 = (1 + 0.8660254) / 2 = 0.9330127;  t=7: (1 + cos(pi/2)) / 2 = 0.5
#     t=10: (1 + cos(pi)) / 2 = 0
HAND = {0: 0.1, 1: 0.325, 2: 0.55, 3: 0.775, 4: 1.0, 5: 0.9330127, 7: 0.5, 10: 0.0}


@pytest.mark.parametrize("step,expected", sorted(HAND.items()))
def test_factor_matches_hand_values(step, expected):
    assert WarmupCosine(total_steps=10, warmup_steps=4)(step) == pytest.approx(expected, abs=1e-7)


def test_floor_lifts_the_cosine():
    schedule = WarmupCosine(total_steps=10, warmup_steps=4, floor=0.2)
    assert schedule(7) == pytest.approx(0.2 + 0.8 * 0.5)  # half-way down the cosine
    assert schedule(10) == pytest.approx(0.2)
    assert schedule(0) == pytest.approx(0.1)  # the warm-up does not see the floor


def test_steps_past_the_end_stay_at_the_floor():
    schedule = WarmupCosine(total_steps=10, warmup_steps=4, floor=0.05)
    assert schedule(11) == pytest.approx(0.05)
    assert schedule(1000) == pytest.approx(0.05)


def test_no_warm_up_starts_at_full_rate():
    schedule = WarmupCosine(total_steps=4, warmup_steps=0)
    # cosine over 4 steps: (1 + cos(pi * t / 4)) / 2 -> 1, 0.8535534, 0.5, 0.1464466
    assert [schedule(t) for t in range(4)] == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466], abs=1e-7)


def test_warm_up_over_the_whole_run_never_decays():
    schedule = WarmupCosine(total_steps=4, warmup_steps=4, start_factor=0.2)
    assert [schedule(t) for t in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


def test_factor_never_increases_after_warm_up():
    schedule = WarmupCosine(total_steps=50, warmup_steps=5)
    values = [schedule(t) for t in range(5, 51)]
    assert all(later <= earlier for earlier, later in zip(values, values[1:]))
    assert values[0] == 1.0 and values[-1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        (dict(total_steps=0, warmup_steps=0), "at least one step"),
        (dict(total_steps=5, warmup_steps=6), "warmup_epochs"),
        (dict(total_steps=5, warmup_steps=-1), "warmup_epochs"),
        (dict(total_steps=5, warmup_steps=1, start_factor=1.5), "start_factor"),
        (dict(total_steps=5, warmup_steps=1, floor=-0.1), "floor"),
    ],
)
def test_bad_settings_are_one_clear_error(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        WarmupCosine(**kwargs)


def _optimizer() -> torch.optim.Optimizer:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 5.0}], lr=1.0)


def test_lambda_lr_scales_every_group_per_step():
    optimizer = _optimizer()
    scheduler = LambdaLR(optimizer, WarmupCosine(total_steps=10, warmup_steps=4))  # as the Trainer builds it
    seen = []
    for _ in range(8):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    for step in (0, 1, 2, 3, 4, 5, 7):
        assert seen[step] == pytest.approx([HAND[step], 5.0 * HAND[step]], abs=1e-6)


def test_scheduler_state_survives_weights_only_round_trip():
    optimizer = _optimizer()
    scheduler = LambdaLR(optimizer, WarmupCosine(total_steps=10, warmup_steps=4))  # as the Trainer builds it
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    fresh_optimizer = _optimizer()
    fresh = LambdaLR(fresh_optimizer, WarmupCosine(total_steps=10, warmup_steps=4))
    fresh.load_state_dict(state)
    # the restored scheduler continues at step 3, then 4
    assert fresh.get_last_lr() == pytest.approx([HAND[3], 5 * HAND[3]])
    fresh_optimizer.step()
    fresh.step()
    assert [g["lr"] for g in fresh_optimizer.param_groups] == pytest.approx([1.0, 5.0])
