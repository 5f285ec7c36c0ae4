"""The bench report: speedup direction, the text table, the JSON record, the chart."""

from __future__ import annotations

import importlib.util
import json

import pytest

from picklepool.bench import report
from picklepool.bench.measure import Samples
from picklepool.bench.results import Cell, Row, Table, WorkloadResult

ENV = {
    "date": "2025-01-01T00:00:00+00:00",
    "python": "3.11.7",
    "usable_cores": 2,
    "cpu_model": "Test CPU",
    "load_average": [0.1, 0.1, 0.1],
    "versions": {
        "picklepool": "0.1.0",
        "joblib": "1.6.0",
        "loky": "3.7",
        "cloudpickle": "3.1",
        "numpy": None,
    },
    "pickler": {"name": "hybrid", "source": "default"},
}
SETTINGS = {"quick": True, "n_jobs": 2, "reps": 3, "budget_s": 8.0, "total_s": 1.5}


def _results() -> list[WorkloadResult]:
    row = Row("tiny_tasks")
    row.cells["picklepool"] = Cell.from_samples(Samples([0.125, 0.25, 0.125]))
    row.cells["joblib"] = Cell.from_samples(Samples([0.5, 0.75, 0.625]))
    row.cells["mp.Pool"] = Cell.from_samples(Samples([None, None, None], error="TypeError: cannot pickle"))
    row.cells["loop"] = Cell.skipped("not applicable here")
    ok = WorkloadResult("tiny_tasks", "100k calls", rows=[row])
    ok.tables.append(Table("detail", ["variant", "time"], [["x", "cannot run: " + "because " * 20]]))
    skipped = WorkloadResult("cluster", "on dask", skipped="dask.distributed is not installed")
    failed = Row("big_array_in")
    failed.cells["picklepool"] = Cell.from_samples(Samples([None], error="AssertionError: wrong result"))
    failed.cells["joblib"] = Cell.from_samples(Samples([0.5]))
    error = WorkloadResult("big_array_in", "large array", rows=[failed])
    return [ok, skipped, error]


def test_speedup_is_peer_time_over_picklepool_time_round_by_round():
    (row,) = _results()[0].rows
    speedup = row.speedup("joblib")
    assert (speedup.median, speedup.min, speedup.max) == (4.0, 3.0, 5.0)
    assert row.speedup("mp.Pool") is None  # failed cells give no ratio


def test_text_report_shows_times_ratio_and_why_cells_are_empty():
    text = report.format_report(_results(), ENV, SETTINGS)
    assert "speedup vs joblib = joblib time / picklepool time" in text
    line = next(line for line in text.splitlines() if line.startswith("tiny_tasks"))
    assert "125 (125-250) ms" in line and "4.00x (3.00-5.00)" in line
    assert "n/a [1]" in line and "n/a [2]" in line  # peers that cannot run it: not errors
    assert "[1] mp.Pool, tiny_tasks: failed: TypeError: cannot pickle" in text
    assert "[2] loop, tiny_tasks: not applicable here" in text
    assert "cluster: dask.distributed is not installed" in text
    assert "cannot run [" in text  # long reasons in detail tables become footnotes
    line = next(line for line in text.splitlines() if line.startswith("big_array_in"))
    assert "ERROR [" in line  # picklepool failed: an error
    assert "ERRORS in 1 workload(s): big_array_in" in text


def test_markdown_report_has_pipe_tables():
    text = report.format_report(_results(), ENV, SETTINGS, markdown=True)
    assert "| workload | picklepool | joblib | mp.Pool | cf.PPE | loop | speedup vs joblib |" in text
    assert "| tiny_tasks | 125 (125-250) ms |" in text


def test_json_record_holds_every_cell_and_ratio():
    data = json.loads(json.dumps(report.to_json(_results(), ENV, SETTINGS)))
    tiny, shared, error = data["workloads"]
    cells = tiny["rows"][0]["cells"]
    assert cells["picklepool"]["times"] == [0.125, 0.25, 0.125]
    assert cells["mp.Pool"] == {"status": "failed", "reason": "TypeError: cannot pickle"}
    assert tiny["rows"][0]["speedup"]["joblib"]["median"] == 4.0
    assert tiny["status"] == "ok"  # a peer failed: n/a for that peer, not an error
    assert shared["status"] == "skipped" and "not installed" in shared["reason"]
    assert error["status"] == "error"
    assert error["problems"] == ["big_array_in: picklepool: AssertionError: wrong result"]


@pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib (the plot extra) not installed"
)
def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "bench.png"
    assert report.plot(_results(), ENV, SETTINGS, str(path)) == 1
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_unavailable_message_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(report.PlotUnavailable, match=r"picklepool\[plot\]"):
        report.check_plot_possible()
