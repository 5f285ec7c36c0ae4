"""``picklepool bench --scaling`` end to end, in this process, at tiny sizes."""

from __future__ import annotations

import importlib.util
import json

import pytest

from picklepool import cli
from picklepool.bench import scaling
from picklepool.bench.tasks import square


@pytest.fixture
def tiny_sizes(monkeypatch):
    monkeypatch.setattr(scaling, "QUICK_BASE", {"tiny_tasks": 2, "shared_state": 1})
    monkeypatch.setattr(scaling, "QUICK_STATE_BYTES", 4096)


@pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib (the plot extra) not installed"
)
def test_scaling_prints_time_per_task_per_size_and_plots_it(tiny_sizes, capsys, tmp_path):
    png, out_json = tmp_path / "scaling.png", tmp_path / "scaling.json"
    args = ["bench", "--scaling", "--quick", "--reps", "1", "--no-progress"]
    assert cli.main([*args, "--plot", str(png), "--json", str(out_json)]) == 0
    out, err = capsys.readouterr()
    assert "time per task" in out.lower() and "µs" in out
    lines = [line.split() for line in out.splitlines() if line.startswith(("tiny_tasks", "shared_state"))]
    assert [(cells[0], cells[1]) for cells in lines] == [
        ("tiny_tasks", "1"),
        ("tiny_tasks", "2"),
        ("shared_state", "1"),
        ("shared_state", "2"),
    ]
    tiny_line = " ".join(lines[0])
    assert "2 tasks:" in tiny_line and "20 tasks:" in tiny_line and "200 tasks:" in tiny_line
    assert "ERROR" not in out and "ERROR" not in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(out_json.read_text())
    assert data["schema"] == "picklepool-bench-scaling/1"
    assert [(r["case"], r["n_jobs"], r["sizes"]) for r in data["rows"]] == [
        ("tiny_tasks", 1, [2, 20, 200]),
        ("tiny_tasks", 2, [2, 20, 200]),
        ("shared_state", 1, [1, 10, 100]),
        ("shared_state", 2, [1, 10, 100]),
    ]
    for row in data["rows"]:
        assert set(row["seconds_per_task"]) == {str(n) for n in row["sizes"]} and not row["errors"]
        assert row["growth"] > 0


def test_a_wrong_result_in_a_scaling_case_fails_the_command(tiny_sizes, monkeypatch, capsys):
    def wrong(state_bytes):
        return lambda n: (square, [(i,) for i in range(n)], [-1] * n)

    monkeypatch.setattr(scaling, "CASES", {"tiny_tasks": wrong})
    assert cli.main(["bench", "--scaling", "--quick", "--reps", "1", "--n-jobs", "1", "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "ERROR: tiny_tasks n_jobs=1, 2 tasks: AssertionError: wrong result" in err
    assert "2 tasks: ERROR" in out


def test_scaling_takes_no_only():
    assert cli.main(["bench", "--scaling", "--only", "tiny_tasks"]) == 2
