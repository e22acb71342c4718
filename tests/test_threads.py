"""OpenMP's idle threads sleep after a short spin unless the user chose otherwise (see tireid_lite.threads)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tireid_lite.threads import SPIN_COUNT, share_cores_politely

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("given", "expected"), [
    ({}, {"GOMP_SPINCOUNT": SPIN_COUNT}),
    ({"GOMP_SPINCOUNT": "300000"}, {"GOMP_SPINCOUNT": "300000"}),
    ({"OMP_WAIT_POLICY": "active"}, {"OMP_WAIT_POLICY": "active"}),
])
def test_the_spin_count_is_set_only_when_the_user_set_nothing(given, expected, monkeypatch):
    for key in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in given.items():
        monkeypatch.setenv(key, value)
    assert share_cores_politely() == (not given)
    assert {k: os.environ[k] for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY") if k in os.environ} == expected


def test_importing_the_kit_sets_it_before_torch_loads_openmp():
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(REPO)
    code = "import os, tireid_lite, torch; print(os.environ['GOMP_SPINCOUNT'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == SPIN_COUNT
