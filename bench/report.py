"""Rows of figures, each beside its baseline, printed and written to RESULTS.md."""

from __future__ import annotations

import datetime
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "RESULTS.md"


@dataclass(frozen=True)
class Row:
    scenario: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline  # type: ignore[operator]

    def cells(self) -> list[str]:
        ratio = f"{self.ratio:.2f}" if self.ratio is not None else ""
        baseline = f"{self.baseline:,.1f} ({self.baseline_name})" if self.baseline is not None else ""
        verdict = {True: "met", False: "MISSED", None: ""}[self.met]
        target = f"{self.target} {verdict}".strip()
        return [
            self.scenario,
            self.metric,
            f"{self.value:,.1f} {self.unit}",
            baseline,
            ratio,
            target,
            self.note,
        ]


HEADERS = ["scenario", "metric", "value", "baseline (same run)", "ratio", "target", "note"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_table(rows: list[Row]) -> None:
    table = Table(*HEADERS, title="tusd-py bench")
    for row in rows:
        table.add_row(*row.cells())
    Console(width=200).print(table)


def write_markdown(rows: list[Row], command: str, path: Path = RESULTS) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- CPU: {cpu_name()} ({_cores()} cores)",
        f"- Python: {sys.version.split()[0]} on {platform.platform()}",
        f"- reproduce: `{command}`",
        "",
        "Every figure stands beside a baseline measured in the same run on the same machine;",
        "the ratio is value / baseline. Absolute numbers move from run to run on a shared",
        "2-core machine; ratios move much less.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row.cells()) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n")


def _cores() -> int:
    import os

    return os.cpu_count() or 1
