"""What the kit runs on: versions, device, threads (shown in ``00_welcome``)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

PACKAGES = ("torch", "torchvision", "timm", "transformers", "tokenizers", "spacy", "numpy", "scikit-learn")


def environment_report() -> dict[str, str]:
    """A flat dict of what a bug report or a benchmark needs to say about the machine."""
    import torch

    from tireid_lite.threads import spin_setting

    report = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "openmp_wait": spin_setting(),
    }
    for name in PACKAGES:
        try:
            report[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            report[name] = "not installed"
    if torch.cuda.is_available():
        report["device"] = f"cuda ({torch.cuda.get_device_name(0)})"
        report["bf16"] = str(torch.cuda.is_bf16_supported())
    else:
        report["device"] = "cpu"
    return report


def configure(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    report = environment_report()
    if args.json:
        import json

        print(json.dumps(report, indent=2))
    else:
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}", file=sys.stdout)
    return 0
