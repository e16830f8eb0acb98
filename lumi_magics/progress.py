"""A one-line progress display for waiting cells, printed only once a wait passes two seconds."""

from __future__ import annotations

import sys

SHOW_AFTER_S = 2.0


class Progress:
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.shown = False

    def update(self, state: str, elapsed: float = 0.0) -> None:
        if elapsed < SHOW_AFTER_S and not self.shown:
            return
        self.shown = True
        self.stream.write(f"\r[lumi] {state:<9} {elapsed:6.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
