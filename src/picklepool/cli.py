"""The ``picklepool`` command: ``picklepool info`` and ``picklepool bench``.

    picklepool info                      versions, cores, the pickler in force and why
    picklepool bench [--quick] [--only NAME ...] [--json PATH] [--plot PATH.png]
    picklepool bench --scaling [--quick] [--json PATH] [--plot PATH.png]

``picklepool bench`` exits 1 when a workload is in error (it raised, a picklepool
feature it measures is broken, or picklepool gave a wrong result), naming each
one on stderr; 2 for a bad command line.

``python -m picklepool`` is the same command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def info_lines(env: dict[str, Any]) -> list[str]:
    """``picklepool info``'s report, one line per fact."""
    from .bench.environment import CORE, EXTRAS

    v = env["versions"]
    pickler = env["pickler"]
    if "name" in pickler:
        chosen = f"{pickler['name']} (from {pickler['source']})"
    else:
        chosen = f"INVALID: {pickler['error']}"
    shm = env["dev_shm"]
    present = [f"{name} {v[name]}" for name in EXTRAS if v.get(name)]
    missing = [name for name in EXTRAS if not v.get(name)]
    lines = [
        f"picklepool      {v['picklepool']} ({env['picklepool_location']})",
        f"python          {env['python']} ({env['python_implementation']}, {env['executable']})",
        *(f"{name:<15} {v[name] or 'not installed'}" for name in CORE),
        f"usable cores    {env['usable_cores']} (os.cpu_count() = {env['os_cpu_count']}; {env['cpu_model']})",
        f"pickler         {chosen}",
        "start method    " + ", ".join(f"{k}: {m}" for k, m in env["start_method"].items()),
        f"/dev/shm        {_gib(shm['free_bytes'])} free of {_gib(shm['total_bytes'])}"
        if shm
        else "/dev/shm        not available (shared data goes to the temporary folder)",
        f"extras present  {', '.join(present) or 'none'}",
        f"extras missing  {', '.join(missing) or 'none'}",
        *_worker_lines(),
    ]
    return lines


def _worker_lines() -> list[str]:
    """Thread limits workers get, and memory recycling in this process."""
    from .executor import limits, memory

    threads = limits.info()
    mem = memory.info()
    limit = mem["max_worker_memory"]
    return [
        f"worker threads  {threads['inner_max_num_threads']} per worker by default with n_jobs="
        f"{threads['n_jobs']} (BLAS/OpenMP; threadpoolctl {threads['threadpoolctl'] or 'not installed'})",
        f"worker memory   max_worker_memory={'off' if limit is None else limit}; "
        f"recycling {'available' if mem['recycling'] else 'unavailable'}; "
        f"{mem['recycled_workers']} worker(s) recycled in this process",
    ]


def cmd_info(args: argparse.Namespace) -> int:
    from .bench.environment import collect
    from .lokycompat import loky_pickler_error

    bad = loky_pickler_error()
    if bad is not None:  # loky cannot be imported (it counts the cores): say why, as a call does
        print(f"picklepool info: {bad}", file=sys.stderr)
        return 1
    env = collect()
    print("\n".join(info_lines(env)))
    return 1 if "error" in env["pickler"] else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import report
    from .bench.suite import WORKLOADS, broken, run_suite

    if args.only:
        unknown = [n for n in args.only if n not in WORKLOADS]
        if unknown:
            print(
                f"picklepool bench: unknown workload(s) {unknown}; choose from {list(WORKLOADS)}",
                file=sys.stderr,
            )
            return 2
    if args.plot:
        try:
            report.check_plot_possible()
        except report.PlotUnavailable as exc:
            print(f"picklepool bench: {exc}", file=sys.stderr)
            return 2
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        problem = _unwritable(path) if path else None
        if problem:  # said now, not after a run of minutes that could not write its output
            print(f"picklepool bench: {flag} {path!r} {problem}", file=sys.stderr)
            return 2
    if args.scaling:
        if args.only:
            print("picklepool bench: --scaling runs its own cases; it takes no --only", file=sys.stderr)
            return 2
        return _bench_scaling(args)
    try:
        results, env, settings = run_suite(
            quick=args.quick,
            only=args.only,
            n_jobs=args.n_jobs,
            reps=args.reps,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print("\npicklepool bench: interrupted; no results written", file=sys.stderr)
        return 130
    sys.stdout.write(report.format_report(results, env, settings, markdown=args.markdown))
    written = True
    if args.json:
        data = report.to_json(results, env, settings)
        if _write_output("--json", args.json, lambda: report.write_json(args.json, data)):
            print(f"JSON written to {args.json}", file=sys.stderr)
        else:
            written = False
    if args.plot:
        try:
            if _write_output("--plot", args.plot, lambda: report.plot(results, env, settings, args.plot)):
                print(f"chart written to {args.plot}", file=sys.stderr)
            else:
                written = False
        except ValueError as exc:
            print(f"picklepool bench: no chart: {exc}", file=sys.stderr)
    code = _exit_code(broken(results))
    return code or (0 if written else 2)


def _unwritable(path: str) -> str | None:
    """Why *path* cannot be written (the rest of the message), or None."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "is a folder: name a file in it (e.g. bench.json, bench.png)"
    if not os.path.isdir(folder):
        return (
            f"cannot be written: its folder {folder!r} does not exist; create it first, or name another path"
        )
    if not os.access(folder, os.W_OK):
        return f"cannot be written: this user may not write in its folder {folder!r}; name another path"
    return None


def _write_output(flag: str, path: str, write: Callable[[], object]) -> bool:
    """Run *write*; on an ``OSError`` (a full disk) say so, without a traceback: the report
    above has the numbers. True when written."""
    try:
        write()
    except OSError as exc:
        print(
            f"picklepool bench: {flag} {path!r} could not be written ({exc}); the report above "
            "has the numbers",
            file=sys.stderr,
        )
        return False
    return True


def _exit_code(problems: list[str]) -> int:
    """1 and each problem on stderr, or 0 when there is none."""
    if problems:
        print(f"picklepool bench: FAILED: {len(problems)} error(s):", file=sys.stderr)
        for problem in problems:
            print(f"picklepool bench: ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _bench_scaling(args: argparse.Namespace) -> int:
    from .bench import report, scaling
    from .bench.environment import collect
    from .bench.measure import Progress

    reps = args.reps or 3
    n_jobs = sorted({1, args.n_jobs})
    bar = Progress(1, sys.stderr, enabled=not args.no_progress)
    bar.begin("scaling")
    try:
        rows = scaling.run_scaling(quick=args.quick, reps=reps, n_jobs=n_jobs, step=bar.step)
    except KeyboardInterrupt:
        print("\npicklepool bench: interrupted; no results written", file=sys.stderr)
        return 130
    problems = scaling.problems(rows)
    bar.end("error" if problems else "done")
    env = collect()
    sys.stdout.write(scaling.format_scaling(rows, env, args.quick, reps))
    written = True
    if args.json:
        settings = {"scaling": True, "quick": args.quick, "reps": reps, "n_jobs": n_jobs, "argv": sys.argv}
        data = scaling.to_json(rows, env, settings)
        if _write_output("--json", args.json, lambda: report.write_json(args.json, data)):
            print(f"JSON written to {args.json}", file=sys.stderr)
        else:
            written = False
    if args.plot:
        try:
            if _write_output("--plot", args.plot, lambda: scaling.plot_scaling(rows, args.plot)):
                print(f"chart written to {args.plot}", file=sys.stderr)
            else:
                written = False
        except ValueError as exc:
            print(f"picklepool bench: no chart: {exc}", file=sys.stderr)
    code = _exit_code(problems)
    return code or (0 if written else 2)


def build_parser() -> argparse.ArgumentParser:
    from .bench.suite import WORKLOADS

    parser = argparse.ArgumentParser(prog="picklepool", description="picklepool: information and benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, usable cores, the pickler in force and where it comes from")
    info.set_defaults(func=cmd_info)
    bench = sub.add_parser(
        "bench",
        help="compare picklepool with joblib, multiprocessing and concurrent.futures",
        description="Run the benchmark suite: a table on stdout, progress on stderr. "
        f"Workloads: {', '.join(WORKLOADS)}.",
    )
    bench.add_argument(
        "--quick", action="store_true", help="smaller sizes and fewer rounds (one to two minutes on 2 cores)"
    )
    bench.add_argument("--only", nargs="+", metavar="NAME", help="run only these workloads")
    bench.add_argument("--json", metavar="PATH", help="also write every number and the environment as JSON")
    bench.add_argument(
        "--plot", metavar="PATH.png", help="also draw the speedups as a bar chart (matplotlib)"
    )
    bench.add_argument("--n-jobs", type=int, default=2, help="workers for every implementation (default 2)")
    bench.add_argument("--reps", type=int, help="timed rounds per workload (default 3 with --quick, else 7)")
    bench.add_argument(
        "--scaling",
        action="store_true",
        help="instead of the suite: picklepool's time per task on tiny tasks and SharedState tasks at "
        "1x, 10x and 100x the number of tasks, n_jobs 1 and --n-jobs (with --plot: time per task vs size)",
    )
    bench.add_argument("--markdown", action="store_true", help="print the tables as Markdown (for a README)")
    bench.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reps = getattr(args, "reps", None)
    if getattr(args, "n_jobs", 2) < 1 or (reps is not None and reps < 1):
        print("picklepool bench: --n-jobs and --reps must be positive", file=sys.stderr)
        return 2
    code: int = args.func(args)
    return code
