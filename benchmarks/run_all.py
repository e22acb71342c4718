"""Run every ``benchmarks/bench_*.py`` and record the results.

Usage::

    python benchmarks/run_all.py [--quick] [NAME ...]

Each benchmark script exposes ``main(quick: bool) -> dict`` (the convention is
described in ``benchmarks/README.md``). Every script runs in a fresh Python
process, so timings and peak-memory figures of one do not leak into the next.
Its result goes to ``benchmarks/results/<name>.json`` together with the machine
and the date; then ``benchmarks/RESULTS.md`` is rewritten from every JSON file in
``benchmarks/results/``. Both are written to a temporary name and renamed, so an
interrupted run never leaves a half-written file. The exit status is 0 when every
benchmark that ran met its budget, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
REQUIRED_KEYS = ("name", "figures", "budget", "met")


# ------------------------------------------------------------------ convention


def limit_holds(value: float, limit: dict[str, float]) -> bool:
    """Whether ``value`` respects a limit ``{"max": x}``, ``{"min": x}`` or both."""
    if "max" in limit and not value <= limit["max"]:
        return False
    if "min" in limit and not value >= limit["min"]:
        return False
    return True


def budget_met(figures: dict[str, Any], limits: dict[str, dict[str, float]]) -> bool:
    """True when every figure named in ``limits`` respects its limit."""
    return all(limit_holds(figures[name], limit) for name, limit in limits.items())


def check_result(result: Any, expected_name: str) -> list[str]:
    """Every way ``result`` breaks the README's convention, as readable lines (empty: fine)."""
    if not isinstance(result, dict):
        return [f"main() returned {type(result).__name__}, not a dict"]
    problems = [f"missing key {key!r}" for key in REQUIRED_KEYS if key not in result]
    if problems:
        return problems
    if result["name"] != expected_name:
        problems.append(f"name is {result['name']!r} but the file is bench_{expected_name}.py")
    figures, budget = result["figures"], result["budget"]
    if not isinstance(figures, dict) or not figures:
        return problems + ["figures must be a non-empty dict of name -> value"]
    if not isinstance(budget, dict) or not isinstance(budget.get("text"), str):
        return problems + ["budget must be a dict with a 'text' string and a 'limits' dict"]
    limits = budget.get("limits", {})
    if not isinstance(limits, dict):
        return problems + ["budget['limits'] must be a dict of figure name -> {'max'/'min': number}"]
    for name, limit in limits.items():
        if name not in figures:
            problems.append(f"budget limit on {name!r}, which is not among the figures")
        elif not isinstance(limit, dict) or not limit or set(limit) - {"max", "min"}:
            problems.append(f"limit on {name!r} must be {{'max': x}} and/or {{'min': x}}; got {limit!r}")
        elif not _is_number(figures[name]):
            problems.append(f"figure {name!r} has a limit but is not a number: {figures[name]!r}")
    if not isinstance(result["met"], bool):
        problems.append(f"met must be true or false; got {result['met']!r}")
    elif not problems and result["met"] != budget_met(figures, limits):
        problems.append(f"met is {result['met']} but the limits say {budget_met(figures, limits)}")
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what the platform module knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def machine_info() -> dict[str, str]:
    """CPU model, cores, versions and device of this machine."""
    from tireid_lite.envinfo import environment_report

    return {"cpu_model": cpu_model(), **environment_report()}


# ------------------------------------------------------------------- running


def discover(names: list[str]) -> list[Path]:
    """The benchmark scripts to run: all of them, or those named."""
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if not names:
        return scripts
    by_name = {path.stem.removeprefix("bench_"): path for path in scripts}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise SystemExit(
            f"run_all.py: no benchmarks/bench_{unknown[0]}.py; choose from {', '.join(sorted(by_name))}"
        )
    return [by_name[name] for name in names]


def run_in_child(script: Path, quick: bool, out_file: Path) -> None:
    """Child mode: import ``script``, call its ``main(quick)``, write the dict as JSON."""
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(quick=quick)
    out_file.write_text(json.dumps(result, indent=2))


def run_benchmark(script: Path, quick: bool) -> dict[str, Any]:
    """Run one script in a fresh process; its checked result, or an error record."""
    name = script.stem.removeprefix("bench_")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--child", str(script), "--child-out", str(out_file)]
        proc = subprocess.run(command + (["--quick"] if quick else []), capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0 or not out_file.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return _error_record(name, f"exited with status {proc.returncode}: {tail[0]}", elapsed)
        result = json.loads(out_file.read_text())
    problems = check_result(result, name)
    if problems:
        return _error_record(name, "; ".join(problems), elapsed)
    return {**result, "elapsed_s": round(elapsed, 2)}


def _error_record(name: str, error: str, elapsed: float) -> dict[str, Any]:
    return {
        "name": name,
        "figures": {},
        "budget": {"text": "", "limits": {}},
        "met": False,
        "error": error,
        "elapsed_s": round(elapsed, 2),
    }


# ------------------------------------------------------------------- writing


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in results/ and a rename."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=RESULTS_DIR, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)  # the mode a plain open() would have given
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _format_limit(name: str, limit: dict[str, float]) -> str:
    parts = []
    if "min" in limit:
        parts.append(f"{name} >= {_format_value(limit['min'])}")
    if "max" in limit:
        parts.append(f"{name} <= {_format_value(limit['max'])}")
    return ", ".join(parts)


def _machine_line(machine: dict[str, str]) -> str:
    return (
        f"{machine.get('cpu_model', '?')}, {machine.get('cpu_count', '?')} cores "
        f"(torch threads {machine.get('torch_threads', '?')}), device {machine.get('device', '?')}, "
        f"torch {machine.get('torch', '?')}, numpy {machine.get('numpy', '?')}, "
        f"python {machine.get('python', '?')}"
    )


def render_results_md(records: list[dict[str, Any]]) -> str:
    """The combined page: the machines, then one table row per benchmark (by name)."""
    machines = []
    for record in records:
        line = _machine_line(record.get("machine", {}))
        if line not in machines:
            machines.append(line)
    lines = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/run_all.py` from `benchmarks/results/*.json`; do not edit by hand.",
        "Timings are wall-clock medians on the machines listed below; on a shared machine they are rough.",
        "",
        "## Machine" + ("s" if len(machines) > 1 else ""),
        "",
    ]
    lines += [f"- [{i + 1}] {line}" for i, line in enumerate(machines)]
    lines += [
        "",
        "## Results",
        "",
        "| benchmark | run | figures | budget (DESIGN.md) | met |",
        "|---|---|---|---|---|",
    ]
    for record in records:
        machine_id = machines.index(_machine_line(record.get("machine", {}))) + 1
        mode = "quick" if record.get("quick") else "full"
        run = f"{record.get('date', '?')}, {mode}, machine [{machine_id}]"
        if "error" in record:
            figures = f"error: {record['error']}"
        else:
            figures = "<br>".join(f"{k} = {_format_value(v)}" for k, v in record["figures"].items())
        budget = record["budget"]
        limits = "; ".join(_format_limit(k, v) for k, v in budget.get("limits", {}).items())
        budget_cell = budget.get("text", "") + (f"<br>limits: {limits}" if limits else "")
        met = "yes" if record["met"] else "**no**"
        lines.append(f"| {record['name']} | {run} | {_escape(figures)} | {_escape(budget_cell)} | {met} |")
    notes = [f"- {record['name']}: {note}" for record in records for note in _notes(record)]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def _notes(record: dict[str, Any]) -> list[str]:
    """The record's own notes, and what its load-average figures (if any) say about the machine."""
    figures, notes = record.get("figures", {}), list(record.get("notes", []))
    loads = [figures[k] for k in ("load_avg_1min_start", "load_avg_1min_end") if _is_number(figures.get(k))]
    cores = record.get("machine", {}).get("cpu_count")
    if loads and str(cores).isdigit() and not any(note.startswith("load average") for note in notes):
        shared = max(loads) > 0.5 * int(cores)
        notes.insert(0, f"load average {' -> '.join(str(v) for v in loads)} during the run on {cores} cores: "
                        + ("the machine was shared, so every time is an upper bound; rerun on a quiet machine "
                           "for the figures to keep" if shared else "a quiet machine"))
    return notes


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def load_records() -> list[dict[str, Any]]:
    """Every recorded result whose benchmark script still exists, by name."""
    records = []
    for path in sorted(RESULTS_DIR.glob("*.json")):
        if (BENCH_DIR / f"bench_{path.stem}.py").exists():
            records.append(json.loads(path.read_text()))
    return records


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks and write benchmarks/RESULTS.md.")
    parser.add_argument("names", nargs="*", help="benchmarks to run (the NAME of bench_NAME.py); default all")
    parser.add_argument("--quick", action="store_true", help="smaller and fewer repetitions (a smoke run)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_in_child(args.child, args.quick, args.child_out)
        return 0

    scripts = discover(args.names)
    if not scripts:
        print("run_all.py: no benchmarks/bench_*.py found", file=sys.stderr)
        return 1
    machine = machine_info()
    all_met = True
    for script in scripts:
        print(f"running {script.name}{' (quick)' if args.quick else ''} ...", flush=True)
        record = run_benchmark(script, args.quick)
        record.update(
            quick=args.quick,
            date=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            machine=machine,
        )
        write_atomically(RESULTS_DIR / f"{record['name']}.json", json.dumps(record, indent=2) + "\n")
        status = "met" if record["met"] else f"NOT met{': ' + record['error'] if 'error' in record else ''}"
        print(f"  {record['name']}: {status} ({record['elapsed_s']} s)", flush=True)
        all_met &= record["met"]
    write_atomically(RESULTS_MD, render_results_md(load_records()))
    print(f"wrote {RESULTS_MD.relative_to(BENCH_DIR.parent)} and {len(scripts)} file(s) in "
          f"{RESULTS_DIR.relative_to(BENCH_DIR.parent)}/")
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
