"""A broken workload fails ``picklepool bench``: exit code 1, the report and stderr say why.

Workloads are injected into ``WORKLOADS`` and the command runs in this process,
on small sizes.
"""

from __future__ import annotations

import json

import pytest

from picklepool import cli
from picklepool.bench import features, suite
from picklepool.bench.common import Context, expect, measure_row
from picklepool.bench.peers import opened_peers
from picklepool.bench.results import WorkloadResult
from picklepool.bench.tasks import square


def raising(ctx: Context) -> WorkloadResult:
    raise RuntimeError("the feature under test is broken")


def wrong_result(ctx: Context) -> WorkloadResult:
    res = WorkloadResult("wrong_result", "picklepool's results are checked")
    with opened_peers(1) as (peers, missing):
        only = {"picklepool": peers["picklepool"]}
        row = measure_row(ctx, "wrong_result", only, missing, lambda p: p.map(square, [1, 2]), expect([1, 5]))
    res.rows.append(row)
    return res


def skipped(ctx: Context) -> WorkloadResult:
    return WorkloadResult("skipped", "needs an optional dependency", skipped="somelib is not installed")


def fine(ctx: Context) -> WorkloadResult:
    res = WorkloadResult("fine", "works")
    with opened_peers(1) as (peers, missing):
        res.rows.append(
            measure_row(ctx, "fine", peers, missing, lambda p: p.map(square, [1, 2]), expect([1, 4]))
        )
    return res


@pytest.fixture
def workloads(monkeypatch):
    for func in (raising, wrong_result, skipped, fine):
        monkeypatch.setitem(suite.WORKLOADS, func.__name__, func)


def bench(*names: str, tmp_path=None) -> list[str]:
    args = ["bench", "--quick", "--reps", "1", "--no-progress", "--only", *names]
    if tmp_path is not None:
        args += ["--json", str(tmp_path / "out.json")]
    return args


def test_a_workload_that_raises_makes_the_command_fail_and_says_why(workloads, capsys, tmp_path):
    assert cli.main(bench("fine", "raising", tmp_path=tmp_path)) == 1
    out, err = capsys.readouterr()
    assert "picklepool bench: ERROR: raising: RuntimeError: the feature under test is broken" in err
    assert "ERROR: fine" not in err
    line = next(line for line in out.splitlines() if line.startswith("raising"))
    assert "ERROR [" in line
    assert "ERRORS in 1 workload(s): raising" in out
    data = json.loads((tmp_path / "out.json").read_text())
    status = {w["name"]: w["status"] for w in data["workloads"]}
    assert status == {"fine": "ok", "raising": "error"}


def test_a_wrong_picklepool_result_makes_the_command_fail(workloads, capsys):
    assert cli.main(bench("wrong_result")) == 1
    out, err = capsys.readouterr()
    assert "ERROR: wrong_result: wrong_result: picklepool: AssertionError: wrong result: [1, 4]" in err
    line = next(line for line in out.splitlines() if line.startswith("wrong_result"))
    assert "ERROR [1]" in line


def test_a_workload_skipped_for_a_missing_dependency_does_not_fail(workloads, capsys):
    assert cli.main(bench("fine", "skipped")) == 0
    out, err = capsys.readouterr()
    assert "ERROR" not in err and "ERROR" not in out
    assert "skipped: somelib is not installed" in out


def test_a_peer_that_cannot_run_a_workload_is_n_a_not_an_error(monkeypatch, capsys):
    def peer_fails(ctx: Context) -> WorkloadResult:
        res = WorkloadResult("peer_fails", "joblib raises")
        with opened_peers(1) as (peers, missing):
            only = {k: peers[k] for k in ("picklepool", "loop")}

            def call(p):
                if p.name == "loop":
                    raise TypeError("cannot pickle '_thread.RLock' object")
                return p.map(square, [3])

            res.rows.append(measure_row(ctx, "peer_fails", only, missing, call, expect([9])))
        return res

    monkeypatch.setitem(suite.WORKLOADS, "peer_fails", peer_fails)
    assert cli.main(bench("peer_fails")) == 0
    out, _ = capsys.readouterr()
    line = next(line for line in out.splitlines() if line.startswith("peer_fails"))
    assert "n/a [" in line and "ERROR" not in out
    assert "loop, peer_fails: failed: TypeError: cannot pickle" in out


def test_a_broken_feature_check_raises_and_fails_its_workload(monkeypatch, capsys):
    pytest.importorskip("numpy")
    # As if large arrays reached workers as writeable copies: shared memory is off.
    monkeypatch.setattr(features, "array_flags", lambda arr: (True, "bytes"))
    with pytest.raises(features.FeatureBroken, match="shared-memory array arguments"):
        features.check_shm_arguments(n_jobs=1)

    def uses_the_check(ctx: Context) -> WorkloadResult:
        features.check_shm_arguments(ctx.n_jobs)
        return WorkloadResult("uses_the_check", "never reached")

    monkeypatch.setitem(suite.WORKLOADS, "uses_the_check", uses_the_check)
    assert cli.main(bench("uses_the_check") + ["--n-jobs", "1"]) == 1
    assert "ERROR: uses_the_check: FeatureBroken: shared-memory array arguments" in capsys.readouterr().err


def test_the_shared_state_check_passes_on_this_picklepool():
    assert features.shared_state(n_jobs=1) is None


def test_without_distributed_the_cluster_rows_are_skipped_not_an_error(monkeypatch):
    import sys

    from picklepool.bench.workloads_cluster import dask_cluster

    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    ctx = Context(quick=True, n_jobs=2, reps=1, warmup=0, step=lambda text: None)
    res = dask_cluster(ctx)
    assert res.status == "skipped" and "dask.distributed is not installed" in res.skipped
    assert suite.broken([res]) == []
