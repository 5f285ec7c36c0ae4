"""Workloads that need a fresh process or a real ``__main__`` script (see main_script.py).

seed_table   joblib's serialisation example (seeds/003): one task receiving
             ``list(range(1_000_000))`` with a ``__main__`` function, under every
             pickler and joblib's variants; a combination that cannot run says why
cold_start   the first call in a fresh Python process (issue 2: no slower than joblib)
main_global  200 tasks of a ``__main__`` function reading a global
             ``list(range(1_000_000))`` (issue 3: at least 20x faster than joblib)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from . import environment
from .common import Context
from .measure import Samples, Stat, describe_error, interleave
from .results import COLUMNS, LOOP, Cell, Row, Table, WorkloadResult

MAIN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "main_script.py")

# The seed's timings (joblib's documentation, its author's laptop), for reference.
_SEED_VARIANTS = [
    ("picklepool", "picklepool, default pickler", ""),
    ("pp:hybrid", "picklepool, pickler='hybrid'", ""),
    ("pp:cloudpickle", "picklepool, pickler='cloudpickle'", ""),
    ("pp:pickle+__main__", "picklepool, pickler='pickle', __main__ function", ""),
    ("pp:pickle+id", "picklepool, pickler='pickle', importable function (id)", ""),
    ("pp:wrap+pickle", "picklepool, pickler='pickle', wrap_non_picklable_objects", ""),
    ("joblib", "joblib loky backend (cloudpickle)", "0.041"),
    ("jl:multiprocessing", "joblib multiprocessing backend (pickle, new pool per call)", "0.098"),
    ("jl:pickle+id", "joblib loky, LOKY_PICKLER=pickle, importable function (id)", "0.041"),
    ("jl:pickle+__main__", "joblib loky, LOKY_PICKLER=pickle, __main__ function", "fails"),
    ("jl:wrap+pickle", "joblib loky, LOKY_PICKLER=pickle, wrap_non_picklable_objects", "0.181"),
    ("mp.Pool", "multiprocessing.Pool.starmap (warm pool)", ""),
    ("cf.PPE", "ProcessPoolExecutor.map (warm pool)", ""),
    ("loop", "plain call in the parent, no workers", ""),
]


# Variants that cannot work: stdlib pickle sends functions by reference, and a
# worker has no ``__main__.func_async``.
_EXPECTED_TO_FAIL = ("pp:pickle+__main__", "jl:pickle+__main__")


def seed_table(ctx: Context) -> WorkloadResult:
    size = 1_000_000
    res = WorkloadResult(
        "seed_table",
        f"one task receiving list(range({size:_})) with a function defined in __main__ "
        "(joblib's serialisation example), warm workers",
        {"list_size": size},
    )
    raw = run_script(ctx, "seed_table", ["--size", str(size)])
    row = Row("seed_table")
    for name in COLUMNS:
        if name in raw:
            row.cells[name] = _cell(raw[name])
    res.rows.append(row)
    table = Table(
        "seed_table: one task, list(range(1_000_000)), function defined in __main__; "
        "median (min-max) of warm calls",
        ["variant", "time", "seed's time (s)"],
        [],
    )
    default = environment.pickler_in_force().get("name", "?")
    for key, label, seed in _SEED_VARIANTS:
        if key not in raw:
            continue
        if key == "picklepool":
            label = f"{label} ({default})"
        cell = _cell(raw[key])
        res.data[key] = cell.as_dict()
        if key.startswith("pp:") and key not in _EXPECTED_TO_FAIL and cell.status != "ok":
            res.failures.append(f"{label}: {cell_text(cell)}")
        table.rows.append([label, cell_text(cell, detail=True), seed])
    res.tables.append(table)
    res.notes.append(
        "seed_table: the seed's times are single runs from joblib's documentation, on another "
        "machine; here every variant is warmed up, then timed in interleaved rounds."
    )
    return res


def main_global(ctx: Context) -> WorkloadResult:
    size, n_tasks = ctx.size(250_000, 1_000_000), 200
    res = WorkloadResult(
        "main_global",
        f"{n_tasks} tasks of a __main__ function reading a global list(range({size:_})); "
        "joblib with its default settings",
        {"list_size": size, "n_tasks": n_tasks},
    )
    raw = run_script(ctx, "main_global", ["--size", str(size), "--tasks", str(n_tasks)])
    row = Row("main_global")
    for name in COLUMNS:
        if name in raw:
            row.cells[name] = _cell(raw[name])
    res.rows.append(row)
    res.notes.append(
        "main_global: mp.Pool and cf.PPE are forked after the global is set, so their workers "
        "inherit it and it is never sent; picklepool and joblib send the function by value."
    )
    return res


def cold_start(ctx: Context) -> WorkloadResult:
    n_calls = 10
    res = WorkloadResult(
        "cold_start",
        f"first call ({n_calls} tiny tasks) in a fresh Python process, including starting its workers; "
        "every peer's processes read and write compiled bytecode in a folder of their own "
        "(PYTHONPYCACHEPREFIX, PYTHONDONTWRITEBYTECODE unset), written by the warm-up round",
        {"n_tasks": n_calls},
    )
    names = [name for name in COLUMNS if name != LOOP]
    imports: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="picklepool-cold-") as folder:
        env = _bytecode_env(os.path.join(folder, "pycache"))
        impls = {name: _cold_run(name, ctx.n_jobs, env, imports) for name in names}
        # The warm-up round writes every peer's bytecode (its timings are dropped).
        warm = {name: _cold_run(name, ctx.n_jobs, env) for name in names}
        samples = interleave(impls, reps=ctx.reps, warmup=1, warm=warm, on_step=ctx.step, budget=ctx.budget)
    row = Row("cold_start")
    table = Table(
        "cold_start: median time to import the library, then its first call (s)",
        ["implementation", "import", "first call"],
        [],
    )
    for name in names:
        s = samples[name]
        if s.error and s.error.startswith(f"{_Unavailable.__name__}: "):
            row.cells[name] = Cell.skipped(s.error.partition(": ")[2])
            continue
        cell = Cell.from_samples(s)
        imp = Stat.of(imports.get(name, []))
        if imp is not None:
            cell.extra["import_s"] = imp.as_dict()
        row.cells[name] = cell
        if cell.stat is not None and imp is not None:
            table.rows.append([name, f"{imp.median:.3f}", f"{cell.stat.median:.3f}"])
    row.cells[LOOP] = Cell.skipped("not applicable: no workers to start")
    res.rows.append(row)
    if table.rows:
        res.tables.append(table)
    return res


class _Unavailable(Exception):
    """The implementation is not installed here (a skipped cell, not a failure)."""


def _bytecode_env(folder: str) -> dict[str, str]:
    """The environment of the cold-start processes: bytecode kept as on a usual machine.

    A machine (or CI) with ``PYTHONDONTWRITEBYTECODE`` set never caches the bytecode of
    modules installed without it (an editable install, a source checkout), and compiles
    them at every import, while a wheel's modules come with theirs: the peers would not
    start on equal terms. Here every peer's processes, workers and trackers included,
    read and write bytecode under *folder*, fresh for this row.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = folder
    return env


def _cold_run(
    name: str, n_jobs: int, env: dict[str, str], imports: dict[str, list[float]] | None = None
) -> Callable[[], float]:
    def run() -> float:
        proc = subprocess.run(
            [sys.executable, MAIN_SCRIPT, "cold_start", "--impl", name, "--n-jobs", str(n_jobs)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        if proc.returncode == 3:
            raise _Unavailable(proc.stdout.strip())
        if proc.returncode != 0:
            raise RuntimeError(f"the cold-start subprocess failed: {_tail(proc.stderr)}")
        out = json.loads(proc.stdout)
        if imports is not None:
            imports.setdefault(name, []).append(float(out["import_s"]))
        return float(out["call_s"])

    return run


def _cell(value: Samples | str) -> Cell:
    if isinstance(value, str):
        return Cell.skipped(value)
    return Cell.from_samples(value)


def cell_text(cell: Cell, detail: bool = False) -> str:
    """A cell for a detail table: the time with its range, or why there is none."""
    if cell.status == "ok" and cell.stat is not None:
        s = cell.stat
        return f"{s.median:.3f} ({s.min:.3f}-{s.max:.3f})"
    prefix = "cannot run" if cell.status == "failed" else "skipped"
    return f"{prefix}: {cell.reason}"


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def run_script(ctx: Context, scenario: str, args: list[str]) -> dict[str, Samples | str]:
    """Run a scenario of ``main_script.py`` as a real ``__main__`` script; its samples.

    The script reports progress on stderr (``step: ...`` lines, forwarded to the
    progress bar) and its result as JSON on stdout: per variant, the times of
    each round and the error it raised, or why it was skipped (a string).
    """
    cmd = [sys.executable, MAIN_SCRIPT, scenario, "--reps", str(ctx.reps), "--warmup", str(ctx.warmup)]
    cmd += ["--n-jobs", str(ctx.n_jobs), "--budget", str(ctx.budget), *args]
    start = time.perf_counter()
    with (
        tempfile.TemporaryFile("w+") as result,
        subprocess.Popen(cmd, stdout=result, stderr=subprocess.PIPE, text=True) as proc,
    ):
        assert proc.stderr is not None
        other: list[str] = []
        for line in proc.stderr:
            if line.startswith("step: "):
                ctx.step(line[6:].strip())
            else:
                other.append(line)
        code = proc.wait()
        result.seek(0)
        stdout = result.read()
    if code != 0:
        raise RuntimeError(
            f"the {scenario} subprocess exited with code {code} after "
            f"{time.perf_counter() - start:.1f}s: {_tail(''.join(other))}"
        )
    try:
        raw = json.loads(stdout)
    except ValueError as exc:
        raise RuntimeError(f"the {scenario} subprocess printed no result: {describe_error(exc)}") from None
    out: dict[str, Samples | str] = {}
    for key, value in raw.items():
        out[key] = (
            value if isinstance(value, str) else Samples(times=value["times"], error=value.get("error"))
        )
    return out
