"""The ``picklepool`` command, run as ``python -m picklepool`` in a clean subprocess."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PICKLEPOOL_", "LOKY_PICKLER"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "picklepool", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def test_bench_quick_writes_json_of_the_documented_shape(tmp_path):
    path = tmp_path / "bench.json"
    proc = run_cli("bench", "--quick", "--only", "tiny_tasks", "--reps", "2", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "speedup vs joblib" in proc.stdout and "tiny_tasks" in proc.stdout
    assert "[1/1] tiny_tasks" in proc.stderr  # progress goes to stderr
    data = json.loads(path.read_text())
    assert data["schema"] == "picklepool-bench/1"
    assert data["settings"]["quick"] is True and data["settings"]["only"] == ["tiny_tasks"]
    env = data["environment"]
    for key in ("date", "python", "cpu_model", "usable_cores", "os_cpu_count", "pickler", "start_method"):
        assert key in env, key
    for name in ("picklepool", "loky", "cloudpickle", "psutil"):
        assert isinstance(env["versions"][name], str), name
    assert "speedup" in data["definitions"]
    (workload,) = data["workloads"]
    assert workload["name"] == "tiny_tasks" and workload["status"] == "ok"
    (row,) = workload["rows"]
    assert set(row["cells"]) >= {"picklepool", "mp.Pool", "cf.PPE", "loop"}
    for name, cell in row["cells"].items():
        assert cell["status"] == "ok", (name, cell)
        assert cell["n"] == 2 and len(cell["times"]) == 2
        assert 0 < cell["min"] <= cell["median"] <= cell["max"]
    for peer, ratio in row["speedup"].items():
        assert peer in row["cells"]
        assert set(ratio) == {"median", "min", "max", "n"}


def test_bench_rejects_an_unknown_workload_by_listing_the_valid_ones():
    proc = run_cli("bench", "--only", "no_such_workload")
    assert proc.returncode == 2
    assert "no_such_workload" in proc.stderr and "tiny_tasks" in proc.stderr


@pytest.mark.parametrize("flag", ["--json", "--plot"])
@pytest.mark.parametrize("where", ["missing-folder", "a-folder"])
def test_bench_refuses_an_output_path_it_cannot_write_before_running(tmp_path, flag, where):
    # a full run takes minutes, then died on its last line with open()'s traceback, the
    # JSON (or the chart) never written
    path = tmp_path / "no" / "such" / "out.json" if where == "missing-folder" else tmp_path
    proc = run_cli("bench", "--only", "tiny_tasks", "--reps", "2", flag, str(path))
    assert proc.returncode == 2, proc.stderr
    assert "[1/1]" not in proc.stderr and "Traceback" not in proc.stderr  # refused before running
    assert f"{flag} {str(path)!r}" in proc.stderr
    assert ("does not exist" if where == "missing-folder" else "is a folder") in proc.stderr


def test_bench_refuses_reps_0():
    proc = run_cli("bench", "--only", "tiny_tasks", "--reps", "0")
    assert proc.returncode == 2 and "--reps must be positive" in proc.stderr
    assert "[1/1]" not in proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is not None, reason="matplotlib is installed")
def test_bench_plot_without_matplotlib_says_what_to_install_before_running(tmp_path):
    proc = run_cli("bench", "--only", "tiny_tasks", "--plot", str(tmp_path / "x.png"))
    assert proc.returncode == 2
    assert "matplotlib" in proc.stderr and "picklepool[plot]" in proc.stderr
    assert "[1/1]" not in proc.stderr  # refused before running anything


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "hybrid (from default)"),
        ({"PICKLEPOOL_PICKLER": "pickle"}, "pickle (from env var PICKLEPOOL_PICKLER)"),
        ({"LOKY_PICKLER": "cloudpickle"}, "cloudpickle (from env var LOKY_PICKLER)"),
    ],
)
def test_info_says_which_pickler_is_in_force_and_where_it_comes_from(env, expected):
    proc = run_cli("info", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split(None, 1)[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert expected in lines["pickler"]
    for name in ("picklepool", "python", "loky", "cloudpickle", "psutil"):
        assert name in lines, name
    assert "usable cores" in proc.stdout and "start method" in proc.stdout and "extras present" in proc.stdout
    assert "per worker by default" in proc.stdout
    assert "worker(s) recycled" in proc.stdout


def test_info_reports_the_worker_memory_limit_from_the_environment():
    proc = run_cli("info", env={"PICKLEPOOL_MAX_WORKER_MEMORY": "2G"})
    assert proc.returncode == 0, proc.stderr
    assert f"max_worker_memory={2 << 30}" in proc.stdout


def test_info_with_an_invalid_pickler_setting_names_it_and_fails():
    proc = run_cli("info", env={"PICKLEPOOL_PICKLER": "nonsense"})
    assert proc.returncode == 1
    assert "'nonsense'" in proc.stdout and "PICKLEPOOL_PICKLER" in proc.stdout


def test_info_with_a_loky_pickler_loky_cannot_import_names_it_and_fails():
    # it crashed with loky's traceback ("No module named 'hybrid'") while counting cores
    proc = run_cli("info", env={"LOKY_PICKLER": "hybrid"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "LOKY_PICKLER='hybrid'" in proc.stderr and "PICKLEPOOL_PICKLER" in proc.stderr
