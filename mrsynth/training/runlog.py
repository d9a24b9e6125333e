"""Rank-0 training logs: a CSV of every logged scalar and TensorBoard scalars (when tensorboard is installed).

The CSV is the log of record (readable without TensorBoard); on resume it is truncated to the resumed
iteration, so an interrupted run's rows past its last saved state do not appear twice.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from mrsynth.io.atomic import atomic_output

CSV_FIELDS = ("iteration", "kind", "name", "value")


class RunLogger:
    """Append ``(iteration, kind, name, value)`` rows; mirror them as TensorBoard scalars ``kind/name``."""

    def __init__(self, run_dir: Path, resume_iteration: int = 0, tensorboard: bool = True) -> None:
        self.csv_path = run_dir / "log.csv"
        self._truncate_after(resume_iteration)
        new = not self.csv_path.exists()
        self._file = open(self.csv_path, "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(CSV_FIELDS)
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional extra: mrsynth[tensorboard]
                self._tb = None
            else:
                self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=resume_iteration or None)

    def _truncate_after(self, iteration: int) -> None:
        if not self.csv_path.exists():
            return
        with open(self.csv_path, newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= iteration] if rows else []
        with atomic_output(self.csv_path, overwrite=True) as tmp, open(tmp, "w", newline="") as handle:
            csv.writer(handle).writerows(kept)

    def log(self, iteration: int, kind: str, values: dict[str, float]) -> None:
        for name, value in values.items():
            self._writer.writerow([iteration, kind, name, f"{float(value):.6g}"])
            if self._tb is not None:
                self._tb.add_scalar(f"{kind}/{name}", float(value), iteration)
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
