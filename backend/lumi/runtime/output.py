"""What a Python job prints on its worker, kept as it is written so the notebook can show it while the job runs.

``print``, ``warnings`` (shown on stderr) and ``logging`` through Python's last-resort handler or a
handler made while the job runs all write to ``sys.stdout``/``sys.stderr``, which :func:`captured` swaps
for streams that keep every write, in order, as ``(stream, text)`` chunks. A job's chunks are read while it
runs (``Worker.output``) and come back whole with its result; past :data:`OUTPUT_LIMIT` characters the
rest is dropped, and one last chunk says so.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Iterator

OUTPUT_LIMIT = 256 << 10  # characters kept per job


class Output:
    """The chunks one job has written so far."""

    def __init__(self, job: str | None):
        self.job = job
        self.chunks: list[tuple[str, str]] = []
        self.size = 0
        self.truncated = False
        self._lock = threading.Lock()

    def write(self, stream: str, text: str) -> None:
        with self._lock:
            if self.truncated or not text:
                return
            if self.size + len(text) > OUTPUT_LIMIT:
                text, self.truncated = text[:OUTPUT_LIMIT - self.size], True
            self.chunks.append((stream, text))
            self.size += len(text)
            if self.truncated:
                self.chunks.append(("stderr", f"\n[lumi: the job wrote more than {OUTPUT_LIMIT:,} characters; "
                                              "the rest was dropped]\n"))

    def since(self, start: int) -> list[tuple[str, str]]:
        with self._lock:
            return self.chunks[start:]


class _Stream(io.TextIOBase):
    """A text stream whose writes go to an :class:`Output`, tagged with the stream's name."""

    def __init__(self, output: Output, name: str):
        self.output, self.name = output, name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.output.write(self.name, text)
        return len(text)


@contextlib.contextmanager
def captured(job: str | None) -> Iterator[Output]:
    """Keep what the code in the block writes to stdout and stderr (this process runs one job at a time)."""
    output = Output(job)
    with contextlib.redirect_stdout(_Stream(output, "stdout")), contextlib.redirect_stderr(_Stream(output, "stderr")):
        yield output


def tagged(chunks: list[tuple[str, str]], tag: str) -> list[tuple[str, str]]:
    """``chunks`` as whole lines per stream, each line starting with ``tag`` (for output of several workers)."""
    texts: dict[str, str] = {}
    for stream, text in chunks:
        texts[stream] = texts.get(stream, "") + text
    return [(stream, "".join(f"{tag}{line}\n" for line in text.splitlines())) for stream, text in texts.items()]


def write(chunks: list[tuple[str, str]]) -> None:
    """Write chunks to this process's own stdout and stderr."""
    for stream, text in chunks:
        (sys.stderr if stream == "stderr" else sys.stdout).write(text)
    sys.stdout.flush()
    sys.stderr.flush()
