"""Turning results into the stdout table, the JSON record and the PNG chart."""

from __future__ import annotations

import json
from typing import Any

from .measure import Stat
from .results import COLUMNS, JOBLIB, PEERS, PICKLEPOOL, SPEEDUP_DEFINITION, Cell, Row, WorkloadResult

SCHEMA = "picklepool-bench/1"
TIME_DEFINITION = "seconds; median, min and max over interleaved rounds after warm-up runs"


class PlotUnavailable(RuntimeError):
    """matplotlib is needed for ``--plot`` and is not installed."""


def check_plot_possible() -> None:
    """Raise :class:`PlotUnavailable` before a long run whose chart could not be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib, which is not installed: pip install 'picklepool[plot]' "
            "(or pip install matplotlib), or run without --plot"
        ) from None


def _unit(stats: list[Stat]) -> tuple[str, float]:
    top = max((s.median for s in stats), default=1.0)
    if top < 1e-3:
        return "us", 1e6
    if top < 1.0:
        return "ms", 1e3
    return "s", 1.0


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.2g}"


def _time_text(stat: Stat, unit: str, scale: float) -> str:
    return f"{_num(stat.median * scale)} ({_num(stat.min * scale)}-{_num(stat.max * scale)}) {unit}"


def _ratio_text(stat: Stat | None) -> str:
    if stat is None:
        return "-"
    return f"{_num(stat.median)}x ({_num(stat.min)}-{_num(stat.max)})"


class _Notes:
    """Footnotes for cells that hold a reason instead of a time."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._index: dict[str, int] = {}

    def ref(self, text: str) -> int:
        if text not in self._index:
            self.lines.append(text)
            self._index[text] = len(self.lines)
        return self._index[text]


def _row_cells(row: Row, notes: _Notes) -> list[str]:
    stats = [c.stat for c in row.cells.values() if c.status == "ok" and c.stat is not None]
    unit, scale = _unit(stats)
    out = []
    for name in COLUMNS:
        cell: Cell | None = row.cells.get(name)
        if cell is None:
            out.append("")
        elif cell.status == "ok" and cell.stat is not None:
            out.append(_time_text(cell.stat, unit, scale))
        else:
            out.append(_missing_cell(name, row.label, cell, notes))
    out.append(_ratio_text(row.speedup(JOBLIB)))
    return out


def _missing_cell(name: str, label: str, cell: Cell, notes: _Notes) -> str:
    """A cell without a time: ERROR (picklepool failed), skipped, or n/a (a peer cannot run it)."""
    reason = f"failed: {cell.reason}" if cell.status == "failed" and name != PICKLEPOOL else cell.reason
    if name != PICKLEPOOL:
        word = "n/a"
    else:
        word = "ERROR" if cell.status == "failed" else "skipped"
    return f"{word} [{notes.ref(f'{name}, {label}: {reason}')}]"


def _shorten(text: str, where: str, notes: _Notes, limit: int = 60) -> str:
    """A long ``outcome: reason`` cell becomes ``outcome [n]`` with the reason as footnote n."""
    if len(text) <= limit or ": " not in text:
        return text
    outcome, reason = text.split(": ", 1)
    return f"{outcome} [{notes.ref(f'{where}: {reason}')}]"


def _grid(header: list[str], lines: list[list[str]], markdown: bool = False) -> list[str]:
    if markdown:
        return [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in lines),
        ]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    rule = "  ".join("-" * w for w in widths)
    return [fmt.format(*header).rstrip(), rule, *(fmt.format(*r).rstrip() for r in lines)]


def format_report(
    results: list[WorkloadResult], env: dict[str, Any], settings: dict[str, Any], markdown: bool = False
) -> str:
    """The whole text report: header, main table, detail tables, notes and footnotes.

    With *markdown*, tables are Markdown tables (for a README) instead of aligned text.
    """
    v = env["versions"]
    pickler = env["pickler"]
    chosen = (
        f"pickler {pickler['name']}, from {pickler['source']}"
        if "name" in pickler
        else "invalid pickler setting"
    )
    mode = "--quick" if settings["quick"] else "full run"
    head = [
        f"picklepool bench ({mode}): {env['date']}, Python {env['python']}, {env['usable_cores']} usable "
        f"cores ({env['cpu_model']}), n_jobs={settings['n_jobs']}, load average {env['load_average']}",
        f"picklepool {v['picklepool']} ({chosen}), joblib {v.get('joblib') or 'not installed'}, "
        f"loky {v['loky']}, cloudpickle {v['cloudpickle']}, numpy {v.get('numpy') or 'not installed'}",
        f"Times: median (min-max) over up to {settings['reps']} interleaved rounds after warm-up "
        f"(warm_latency: 50 calls; fewer when a row's rounds would exceed {settings['budget_s']:.0f} s, "
        "but at least 3; each cell's count n is in the JSON).",
        "speedup vs joblib = joblib time / picklepool time, per round, then median (min-max): "
        ">1 means picklepool is faster.",
        "",
    ]
    notes = _Notes()
    header = ["workload", *COLUMNS, "speedup vs joblib"]
    lines: list[list[str]] = []
    for res in results:
        if res.skipped or res.error:
            word, why = ("ERROR", res.error) if res.error else ("skipped", res.skipped)
            lines.append([res.name, f"{word} [{notes.ref(f'{res.name}: {why}')}]"] + [""] * len(COLUMNS))
            continue
        if not res.rows:
            lines.append([res.name, "see its table below"] + [""] * len(COLUMNS))
        for row in res.rows:
            lines.append([row.label, *_row_cells(row, notes)])
    body = _grid(header, lines, markdown)
    details: list[str] = []
    for res in results:
        for table in res.tables:
            rows = [[_shorten(c, r[0], notes) for c in r] for r in table.rows]
            details += ["", table.title, "", *_grid(table.columns, rows, markdown)]
    tail: list[str] = []
    extra_notes = [n for res in results for n in res.notes]
    if extra_notes:
        tail += ["", "Notes:", *(f"- {n}" for n in extra_notes)]
    if notes.lines:
        tail += ["", "Cells without a time:", *(f"[{i}] {t}" for i, t in enumerate(notes.lines, 1))]
    failures = [f"{res.name}: {f}" for res in results for f in res.failures]
    if failures:
        tail += ["", "picklepool failures found by the workloads:", *(f"- {f}" for f in failures)]
    errors = [res.name for res in results if res.status == "error"]
    if errors:
        tail += ["", f"ERRORS in {len(errors)} workload(s): {', '.join(errors)}"]
    tail += ["", f"Total: {settings['total_s']:.1f} s"]
    return "\n".join(head + body + details + tail) + "\n"


def to_json(results: list[WorkloadResult], env: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "settings": settings,
        "environment": env,
        "definitions": {"time": TIME_DEFINITION, "speedup": SPEEDUP_DEFINITION},
        "workloads": [res.as_dict() for res in results],
    }


def write_json(path: str, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def plot(results: list[WorkloadResult], env: dict[str, Any], settings: dict[str, Any], path: str) -> int:
    """Draw picklepool's speedup over each peer, per row, as bars; return the bar count."""
    check_plot_possible()
    from matplotlib.figure import Figure

    rows = [row for res in results for row in res.rows]
    peers = [p for p in PEERS if p != "loop" and any(row.speedup(p) for row in rows)]
    shown = [row for row in rows if any(row.speedup(p) for p in peers)]
    if not shown:
        raise ValueError("nothing to plot: no row has a time for picklepool and for a peer")
    height = 0.8 / max(1, len(peers))
    fig = Figure(figsize=(9, 1.0 + 0.55 * len(shown) * max(1, len(peers)) ** 0.5))
    ax = fig.add_subplot()
    bars = 0
    for k, peer in enumerate(peers):
        ys, xs, lo, hi = [], [], [], []
        for i, row in enumerate(shown):
            s = row.speedup(peer)
            if s is None:
                continue
            ys.append(i + (k - (len(peers) - 1) / 2) * height)
            xs.append(s.median)
            lo.append(s.median - s.min)
            hi.append(s.max - s.median)
        ax.barh(ys, xs, height=height, xerr=[lo, hi], label=f"vs {peer}", capsize=2)
        for y, x, up in zip(ys, xs, hi, strict=True):
            ax.annotate(
                f"{x:.2g}x", (x + up, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7
            )
        bars += len(xs)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(shown)), [row.label for row in shown])
    ax.invert_yaxis()
    ax.set_xlabel("speedup = peer time / picklepool time (log scale; >1: picklepool faster)")
    mode = "quick" if settings["quick"] else "full"
    ax.set_title(
        f"picklepool bench ({mode}), n_jobs={settings['n_jobs']}, "
        f"{env['usable_cores']} cores, {env['date'][:10]}",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return bars
