"""The ``tireid`` command: one subcommand per task, each living beside the code it drives.

A subcommand module exposes ``configure(parser)`` (adds its arguments) and
``run(args) -> int`` (the exit status). Modules are imported only when their
subcommand runs, so ``tireid --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tireid_lite import __version__
from tireid_lite.errors import TIReIDError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("tireid_lite.data.synth.cli", "generate the SynthPEDES dataset in CUHK-PEDES's layout"),
    "check-data": ("tireid_lite.data.checker", "check a dataset root and print its split counts"),
    "train": ("tireid_lite.train.cli", "train a model (cpu or gpu profile)"),
    "eval": ("tireid_lite.eval.cli", "evaluate a checkpoint and print its metrics as JSON"),
    "import-checkpoint": ("tireid_lite.models.released", "turn IRRA's or RDE's released checkpoint into one `tireid eval` scores"),
    "grid": ("tireid_lite.grid", "run a grid spec (arms x seeds x noise rates) into tidy and paired tables"),
    "course": ("tireid_lite.course", "run the notebooks with papermill and write an HTML summary"),
    "env": ("tireid_lite.envinfo", "print versions, device and threads"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tireid",
        description="tireid-lite: text-to-image person re-identification course kit.",
    )
    parser.add_argument("--version", action="version", version=f"tireid-lite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # prints help / errors for unknown commands
        parser.print_help()
        return 0 if not argv else 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"tireid {name}", description=help_text)
    module.configure(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except TIReIDError as err:
        print(f"tireid {name}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
