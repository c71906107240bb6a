"""One file's progress on stderr: a tqdm bar on a terminal, plain lines anywhere else."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} {unit} [{elapsed}<{remaining}]"


class Progress:
    """`done` of `total` (audio seconds, or files); a log or a pipe gets a line per step, since
    a bar redrawn with carriage returns is unreadable there."""

    def __init__(self, label: str, total: float, unit: str, stream: TextIO | None = None):
        self.label, self.total, self.unit = label, total, unit
        self._stream = stream or sys.stderr
        self._done = 0.0
        self._bar = (
            tqdm(total=total, desc=label, unit=unit, file=self._stream, bar_format=BAR_FORMAT)
            if self._stream.isatty()
            else None
        )

    def to(self, done: float) -> None:
        done = min(max(done, self._done), self.total)
        if done == self._done:
            return
        if self._bar is not None:
            self._bar.update(done - self._done)
        else:
            print(f"{self.label}: {done:.1f}/{self.total:.1f} {self.unit}", file=self._stream, flush=True)
        self._done = done

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
