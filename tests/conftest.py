"""Fixtures shared by the loss tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def batch64():
    """Random float64 features for 8 pairs with repeated identities."""
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    text = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    pids = torch.tensor([3, 1, 3, 7, 1, 3, 9, 7])
    return image, text, pids
