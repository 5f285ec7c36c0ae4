"""What a workload hands back: rows of cells, extra tables, notes — and their JSON form.

A *row* is one line of the main table: a workload (or a variant of it) run by
each implementation (a *column*: picklepool, joblib, mp.Pool, cf.PPE, loop).
A *cell* is one implementation's result there: a time (median, min, max), or
why there is none — skipped (peer or optional dependency missing, not
applicable) or failed (the implementation raised or gave a wrong result: the
reason says which).

A picklepool cell that failed makes its workload an *error*, like a workload
that raised or a picklepool failure it found elsewhere (``failures``); a peer
that cannot run a workload is only "n/a" there.
Speedups are computed pair by pair from the aligned per-round times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .measure import Samples, Stat, pair_ratios

PICKLEPOOL = "picklepool"
JOBLIB = "joblib"
MP_POOL = "mp.Pool"
CF_PPE = "cf.PPE"
LOOP = "loop"
COLUMNS = (PICKLEPOOL, JOBLIB, MP_POOL, CF_PPE, LOOP)
PEERS = (JOBLIB, MP_POOL, CF_PPE, LOOP)

SPEEDUP_DEFINITION = "peer time / picklepool time, per round, then median (>1: picklepool is faster)"


@dataclass
class Cell:
    """One implementation's result in one row."""

    status: str  # "ok", "skipped", "failed"
    stat: Stat | None = None
    times: list[float | None] = field(default_factory=list)
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_samples(cls, samples: Samples, extra: dict[str, Any] | None = None) -> Cell:
        if samples.error is not None:
            return cls("failed", times=samples.times, reason=samples.error, extra=extra or {})
        return cls("ok", stat=samples.stat(), times=samples.times, extra=extra or {})

    @classmethod
    def skipped(cls, reason: str) -> Cell:
        return cls("skipped", reason=reason)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.stat is not None:
            out.update(self.stat.as_dict())
            out["times"] = self.times
        if self.reason:
            out["reason"] = self.reason
        if self.extra:
            out["extra"] = self.extra
        return out


@dataclass
class Row:
    """One line of the main table."""

    label: str
    cells: dict[str, Cell] = field(default_factory=dict)
    unit: str = "s"

    def speedup(self, peer: str) -> Stat | None:
        """``peer time / picklepool time``, pair by pair over the rounds both ran."""
        mine, theirs = self.cells.get(PICKLEPOOL), self.cells.get(peer)
        if not mine or not theirs or mine.status != "ok" or theirs.status != "ok":
            return None
        return pair_ratios(theirs.times, mine.times)

    def as_dict(self) -> dict[str, Any]:
        speedups = {peer: s.as_dict() for peer in PEERS if (s := self.speedup(peer)) is not None}
        return {
            "label": self.label,
            "unit": self.unit,
            "cells": {name: cell.as_dict() for name, cell in self.cells.items()},
            "speedup": speedups,
        }


@dataclass
class Table:
    """A detail table printed under the main one (its cells are already text)."""

    title: str
    columns: list[str]
    rows: list[list[str]]

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows}


@dataclass
class WorkloadResult:
    """Everything one workload produced."""

    name: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # raw numbers behind the tables
    skipped: str = ""  # why the whole workload did not run (an optional dependency missing)
    error: str = ""  # the workload raised: a bug in the bench or a broken picklepool feature
    failures: list[str] = field(default_factory=list)  # picklepool failures outside the rows
    elapsed: float = 0.0

    def problems(self) -> list[str]:
        """Why this workload is an error (empty if it is not): what fails ``picklepool bench``."""
        out = [self.error] if self.error else []
        out += self.failures
        for row in self.rows:
            cell = row.cells.get(PICKLEPOOL)
            if cell is not None and cell.status == "failed":
                out.append(f"{row.label}: picklepool: {cell.reason}")
        return out

    @property
    def status(self) -> str:
        if self.problems():
            return "error"
        if self.skipped:
            return "skipped"
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "params": self.params,
            "rows": [row.as_dict() for row in self.rows],
            "tables": [t.as_dict() for t in self.tables],
            "notes": self.notes,
            "elapsed_s": round(self.elapsed, 3),
        }
        if problems := self.problems():
            out["problems"] = problems
        if self.skipped or self.error:
            out["reason"] = self.error or self.skipped
        if self.data:
            out["data"] = self.data
        return out
