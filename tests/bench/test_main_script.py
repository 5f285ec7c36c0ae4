"""The ``__main__`` scenarios of the bench, run as a real script in a subprocess."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from picklepool.bench.workloads_main import MAIN_SCRIPT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICKLEPOOL_", "LOKY_PICKLER"))}
    return subprocess.run(
        [sys.executable, MAIN_SCRIPT, *args], capture_output=True, text=True, env=env, timeout=90
    )


@pytest.mark.skipif(
    importlib.util.find_spec("joblib") is None, reason="joblib (the bench extra) not installed"
)
def test_seed_table_times_what_runs_and_says_why_pickle_cannot_send_a_main_function():
    proc = _run("seed_table", "--reps", "1", "--warmup", "1", "--size", "1000")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "step: run 1/1 picklepool" in proc.stderr
    for key in ("picklepool", "pp:cloudpickle", "pp:pickle+id", "joblib", "mp.Pool", "cf.PPE", "loop"):
        assert out[key]["error"] is None and len(out[key]["times"]) == 1, key
    # Stdlib pickle sends functions by reference: a __main__ function cannot be found in a worker.
    assert "func_async" in out["pp:pickle+__main__"]["error"]
    assert out["pp:pickle+__main__"]["times"] == [None]
    assert out["jl:pickle+__main__"]["error"]


def test_cold_start_reports_import_and_first_call_times():
    proc = _run("cold_start", "--impl", "picklepool")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["import_s"] > 0 and out["call_s"] > 0
