"""Run the course notebooks with papermill and summarise them on one HTML page.

``make course`` calls ``tireid course``: every ``notebooks/NN_slug.ipynb`` is
executed in order (kernel ``python3``, working directory ``notebooks/``) into
``runs/<timestamp>/NN_slug/``, each writing ``metrics.json`` into the
``output_dir`` parameter it is given, and ``runs/<timestamp>/index.html`` lists
every notebook with its status, run time, key metrics and figures. A failing
notebook is marked on the page and makes the command exit non-zero after the
others have run.

Parameters are checked against the notebook's ``parameters`` cell before it runs:
papermill only warns about unknown names, the kit refuses them.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import html
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from tireid_lite.errors import NotebookParameterError, TIReIDError

KERNEL = "python3"
# The kernel's own log, shown on the terminal of `make course`, says at every start that it "is running
# over TCP without encryption" (ipykernel's kernelapp, a WARNING for a local kernel papermill starts and
# owns). Logging from ERROR up keeps the kernel's real failures and drops that line.
KERNEL_ARGS = ["--log-level=ERROR"]


def repo_root() -> Path:
    """The checkout the package is installed from (editable install)."""
    return Path(__file__).resolve().parents[1]


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def list_notebooks(directory: Path | None = None) -> list[Path]:
    """The course notebooks ``NN_slug.ipynb`` in order."""
    directory = Path(directory or notebooks_dir())
    return sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb") if p.is_file())


def _read_notebook(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise TIReIDError(f"{path}: no such notebook; the course notebooks are in {notebooks_dir()}") from None
    except json.JSONDecodeError as err:
        raise TIReIDError(
            f"{path} is not valid notebook JSON (line {err.lineno}, column {err.colno}); "
            "regenerate it from its .py twin with `make sync`"
        ) from None


def notebook_parameters(path: str | os.PathLike) -> dict[str, Any]:
    """Names and default values of the notebook's ``parameters`` cell (literals only)."""
    path = Path(path)
    nb = _read_notebook(path)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            params: dict[str, Any] = {}
            for node in ast.parse(source).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    try:
                        params[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        raise TIReIDError(
                            f"{path.name}: parameter {node.targets[0].id!r} is not a literal; "
                            "a parameters cell holds literals only (derive values in the next cell)"
                        ) from None
            return params
    raise TIReIDError(f"{path.name} has no cell tagged 'parameters'; add one so papermill can set its parameters")


def check_parameters(path: str | os.PathLike, parameters: Mapping[str, Any]) -> None:
    """Refuse names the notebook's ``parameters`` cell does not define."""
    known = notebook_parameters(path)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise NotebookParameterError(
            f"{Path(path).name} has no parameter {', '.join(repr(u) for u in unknown)}; "
            f"its parameters are: {', '.join(known) or '(none)'}"
        )


@dataclass
class NotebookRun:
    """The outcome of one notebook execution."""

    name: str
    status: str  # "ok" or "failed"
    seconds: float
    output_dir: Path
    executed: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    figures: list[Path] = field(default_factory=list)


def _extract_figures(executed: Path, folder: Path) -> list[Path]:
    """Save every PNG output of an executed notebook as ``folder/figure_NN.png``."""
    if not executed.exists():
        return []
    nb = json.loads(executed.read_text(encoding="utf-8"))
    figures = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"figure_{len(figures) + 1:02d}.png"
                png = data["image/png"]
                target.write_bytes(base64.b64decode("".join(png) if isinstance(png, list) else png))
                figures.append(target)
    return figures


def run_notebook(
    path: str | os.PathLike,
    output_dir: str | os.PathLike,
    parameters: Mapping[str, Any] | None = None,
    *,
    kernel: str = KERNEL,
    log_output: bool = False,
) -> NotebookRun:
    """Execute one notebook with papermill into ``output_dir/<name>/``.

    ``output_dir`` is passed to the notebook as its ``output_dir`` parameter; it
    writes ``metrics.json`` there. Unknown parameters raise
    :class:`NotebookParameterError` before anything runs. Cell errors do not
    raise: they come back as ``status="failed"`` with the error message.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path = Path(path).resolve()
    params = dict(parameters or {})
    check_parameters(path, params)
    known = notebook_parameters(path)
    if "output_dir" not in known:
        raise TIReIDError(f"{path.name} has no 'output_dir' parameter; every course notebook takes one")
    name = path.stem
    out = Path(output_dir).resolve() / name
    out.mkdir(parents=True, exist_ok=True)
    params["output_dir"] = str(out)
    executed = out / f"{name}.ipynb"
    start = time.perf_counter()
    status, error = "ok", ""
    try:
        papermill.execute_notebook(
            str(path),
            str(executed),
            parameters=params,
            kernel_name=kernel,
            cwd=str(path.parent),
            progress_bar=False,
            log_output=log_output,
            extra_arguments=list(KERNEL_ARGS),
        )
    except PapermillExecutionError as err:
        status, error = "failed", f"cell {err.exec_count}: {err.ename}: {err.evalue}"
    except Exception as err:  # kernel died, timeout, missing kernel...
        status, error = "failed", f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {}
    metrics_file = out / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    elif status == "ok":
        status, error = "failed", f"{name} ran but wrote no metrics.json into its output_dir"
    figures = _extract_figures(executed, out / "figures")
    return NotebookRun(name, status, seconds, out, executed, metrics, error, figures)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def write_index(runs: list[NotebookRun], folder: Path, title: str) -> Path:
    """Write ``folder/index.html``: one section per notebook with status, time, metrics, figures."""
    rows = []
    sections = []
    for run in runs:
        mark = "ok" if run.status == "ok" else "FAILED"
        rows.append(
            f'<tr class="{run.status}"><td><a href="#{run.name}">{html.escape(run.name)}</a></td>'
            f"<td>{mark}</td><td>{run.seconds:.1f} s</td><td>{len(run.metrics)}</td>"
            f"<td>{len(run.figures)}</td></tr>"
        )
        metric_rows = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_format_value(v))}</td></tr>"
            for k, v in sorted(run.metrics.items())
        )
        figs = "".join(
            f'<a href="{html.escape(str(f.relative_to(folder)))}"><img src="{html.escape(str(f.relative_to(folder)))}" '
            f'alt="{html.escape(run.name)} figure {i + 1}"></a>'
            for i, f in enumerate(run.figures)
        )
        error = f'<p class="error">{html.escape(run.error)}</p>' if run.error else ""
        sections.append(
            f'<section id="{run.name}"><h2>{html.escape(run.name)} <small>({mark}, {run.seconds:.1f} s)</small></h2>'
            f'{error}<p><a href="{html.escape(str(run.executed.relative_to(folder)))}">executed notebook</a></p>'
            f'<table class="metrics"><tr><th>metric</th><th>value</th></tr>{metric_rows}</table>'
            f'<div class="figures">{figs}</div></section>'
        )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
tr.failed td, p.error {{ color: #b00; font-weight: bold; }}
.figures img {{ max-height: 260px; margin: 0.3em; border: 1px solid #ddd; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table><tr><th>notebook</th><th>status</th><th>time</th><th>metrics</th><th>figures</th></tr>
{''.join(rows)}</table>
{''.join(sections)}
</body></html>
"""
    target = folder / "index.html"
    target.write_text(page, encoding="utf-8")
    return target


def prepare_shared_cache(profile: str) -> None:
    """Build the dataset and warm start every notebook of ``profile`` needs, in a process of its own that
    has all the cores (:func:`tireid_lite.zoo.prepare_shared`); one clear error when it fails."""
    command = [sys.executable, "-c", "import sys; from tireid_lite.zoo import prepare_shared; "
               "print(*prepare_shared(sys.argv[1]), sep='\\n')", profile]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise TIReIDError(
            f"preparing the shared cache for profile {profile!r} failed (exit {done.returncode}); rerun with "
            f"--jobs 1 to see the error inside the first notebook that needs it:\n{tail}"
        )


@contextlib.contextmanager
def _threads_per_kernel(jobs: int):
    """``OMP_NUM_THREADS`` for the kernels started inside the block: the cores shared among ``jobs`` notebooks
    (unless the user set it); restored afterwards."""
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)


def run_course(
    runs_dir: str | os.PathLike = "runs",
    notebooks: list[Path] | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    echo=print,
    jobs: int = 1,
) -> tuple[Path, list[NotebookRun]]:
    """Execute ``notebooks`` (default: all, in order) into ``runs_dir/<timestamp>/``.

    ``jobs > 1`` first builds the shared dataset and warm start (:func:`prepare_shared_cache`), then runs
    up to ``jobs`` notebooks at once, in order as kernels free up, each kernel with the cores divided among
    them (``OMP_NUM_THREADS``). Models two notebooks both need are trained once (the model cache's locks).
    On 2 cores two one-thread kernels do about 1.5 times the work of one two-thread kernel: the cpu
    profile's small operators leave a second thread idle much of the time. A model trained on one thread
    differs from one trained on two at float rounding (R@1 alike), as between two machines."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise TIReIDError(f"jobs={jobs!r} is invalid; use 1 (one notebook at a time) or more")
    notebooks = list(notebooks) if notebooks is not None else list_notebooks()
    if not notebooks:
        raise TIReIDError("no notebooks to run: the folder has no NN_slug.ipynb files")
    params = dict(parameters or {})
    known = {nb: notebook_parameters(nb) for nb in notebooks}
    everywhere = set().union(*known.values())
    unknown = sorted(set(params) - everywhere)
    if unknown:  # refuse before anything runs
        raise NotebookParameterError(
            f"no notebook of this run has parameter {', '.join(repr(u) for u in unknown)}; "
            f"their parameters are: {', '.join(sorted(everywhere))}"
        )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(runs_dir).resolve() / stamp
    folder.mkdir(parents=True, exist_ok=False)
    title = f"tireid-lite course run {stamp}"
    if jobs == 1 or len(notebooks) == 1:
        runs = []
        for nb in notebooks:
            nb_params = {k: v for k, v in params.items() if k in known[nb]}
            echo(f"running {nb.name} ...", flush=True)
            run = run_notebook(nb, folder, nb_params)
            echo(f"  {run.status} in {run.seconds:.1f} s" + (f": {run.error}" if run.error else ""), flush=True)
            runs.append(run)
            write_index(runs, folder, title)
        return write_index(runs, folder, title), runs
    profile = str(params.get("profile") or os.environ.get("TIREID_PROFILE") or "cpu")
    echo(f"preparing the shared dataset and warm start (profile {profile}) ...", flush=True)
    start = time.perf_counter()
    prepare_shared_cache(profile)
    echo(f"  ok in {time.perf_counter() - start:.1f} s; now {jobs} notebooks at a time", flush=True)
    finished: dict[Path, NotebookRun] = {}
    lock = threading.Lock()

    def one(nb: Path) -> NotebookRun:
        echo(f"running {nb.name} ...", flush=True)
        run = run_notebook(nb, folder, {k: v for k, v in params.items() if k in known[nb]})
        with lock:
            finished[nb] = run
            echo(f"  {nb.stem}: {run.status} in {run.seconds:.1f} s" + (f": {run.error}" if run.error else ""),
                 flush=True)
            write_index([finished[p] for p in notebooks if p in finished], folder, title)
        return run

    with _threads_per_kernel(jobs), ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = list(pool.map(one, notebooks))  # in the notebooks' order, whatever order they finish in
    return write_index(runs, folder, title), runs


def execute_in_place(path: str | os.PathLike, *, kernel: str = KERNEL, timeout: int = 1800) -> None:
    """Re-execute a notebook in place (cpu profile) so its committed outputs are fresh,
    then rewrite its py:percent twin. Used by ``make notebooks``."""
    import nbformat
    from jupytext.cli import jupytext as jupytext_cli
    from nbclient import NotebookClient

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    env_profile = os.environ.get("TIREID_PROFILE")
    os.environ["TIREID_PROFILE"] = "cpu"
    try:
        NotebookClient(nb, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(path.parent)}},
                       extra_arguments=list(KERNEL_ARGS)).execute()
    finally:
        if env_profile is None:
            os.environ.pop("TIREID_PROFILE", None)
        else:
            os.environ["TIREID_PROFILE"] = env_profile
    nbformat.write(nb, path)
    jupytext_cli(["--sync", str(path), "--quiet"])


def _parse_set(items: list[str]) -> dict[str, Any]:
    params = {}
    for item in items:
        if "=" not in item:
            raise TIReIDError(f"--set {item!r}: expected name=value, e.g. --set num_epochs=2")
        key, raw = item.split("=", 1)
        try:
            params[key.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[key.strip()] = raw
    return params


def configure(parser) -> None:
    parser.add_argument("--runs-dir", default="runs", help="where runs/<timestamp>/ is written (default: runs)")
    parser.add_argument("--notebooks-dir", type=Path, default=None, help="folder of NN_slug.ipynb notebooks (default: the kit's)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (by number or name)")
    parser.add_argument("--profile", choices=("cpu", "gpu"), help="profile passed to every notebook")
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", help="extra notebook parameters")
    parser.add_argument("--inplace", action="store_true", help="re-execute the notebooks in place (refresh committed outputs)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run up to N notebooks at once, the cores shared among them, after building the shared "
                             "dataset and warm start once (default 1; make course uses 2)")


def run(args) -> int:
    notebooks = list_notebooks(args.notebooks_dir)
    if args.only:
        wanted = set(args.only)
        notebooks = [p for p in notebooks if p.stem in wanted or p.stem[:2] in wanted]
        if not notebooks:
            raise TIReIDError(f"--only {' '.join(args.only)} matches no notebook in {args.notebooks_dir or notebooks_dir()}")
    if args.inplace:
        for nb in notebooks:
            print(f"executing {nb.name} in place ...", flush=True)
            execute_in_place(nb)
        return 0
    params = _parse_set(args.set)
    if args.profile:
        params["profile"] = args.profile
    index, runs = run_course(args.runs_dir, notebooks, params, jobs=args.jobs)
    failed = [r.name for r in runs if r.status != "ok"]
    print(f"summary: {index}")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0
