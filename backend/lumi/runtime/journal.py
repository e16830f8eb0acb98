"""The dispatcher's journal: accepted jobs, how they ended, and every metered cost, in SQLite (WAL mode).

The dispatcher writes a job here before it answers the submit, and again when the job finishes, is
cancelled or fails; cost records go in as they are metered. When Ray restarts the dispatcher (or a new one
starts under the same name) it reads the journal back: finished jobs with their small results and output,
queued and running ones to run again, and the cost ledger. A job's program and input ObjectRefs are kept
pickled out of band: Ray resolves them from their owner (the process that submitted the job) as long as it
still holds them. The journal keeps the last ``keep`` finished jobs; cost records are kept whole.

A journal that cannot be written (a full or read-only disk, or a journal at ``LUMI_JOURNAL_MAX_BYTES``) raises
:class:`JournalError`, so the dispatcher refuses the submit rather than accept a job it could lose.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

import ray

from ..errors import JournalError
from .metering import Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
                                 record TEXT NOT NULL, refs BLOB, value BLOB, output TEXT,
                                 taken INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS costs (seq INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL);
"""


class Journal:
    """One dispatcher's journal file; every write is one transaction."""

    def __init__(self, path: Path, max_bytes: int | None = None):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed write survives a crash
            self.db.executescript(_SCHEMA)
            if max_bytes is not None:  # past it SQLite answers "database or disk is full", as a full disk does
                page = self.db.execute("PRAGMA page_size").fetchone()[0]
                self.db.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page)}")
        except (OSError, sqlite3.Error) as e:
            raise JournalError(f"the job journal at {path} cannot be opened ({e}); free the disk or set "
                               "LUMI_JOURNAL to a writable path") from None

    def _write(self, sql: str, rows: list[tuple], *more: tuple[str, list[tuple]]) -> None:
        """Write ``rows`` with ``sql`` (and each further ``(sql, rows)``) in one transaction; nothing when every list
        of rows is empty."""
        writes = [(statement, values) for statement, values in ((sql, rows), *more) if values]
        if not writes:
            return
        try:
            with self.db:
                for statement, values in writes:
                    self.db.executemany(statement, values)
        except sqlite3.Error as e:
            raise JournalError(f"the job journal at {self.path} cannot be written ({e}); nothing was accepted. "
                               "Free the disk or make it writable, then submit again") from None

    def accepted(self, jobs: list[tuple[dict, object, list]]) -> None:
        """Jobs were accepted, each ``(record, program, args)`` (before the submit is answered)."""
        # the ObjectRefs pickled out of band: resolvable after a restart
        self._write("INSERT INTO jobs (id, record, refs) VALUES (?, ?, ?)",
                    [(record["id"], json.dumps(record), ray.cloudpickle.dumps((program, args)))
                     for record, program, args in jobs])

    def ended(self, ends: list[tuple[dict, object, list | None]], forget: list[str] = (),
              costs: list[Record] = ()) -> None:
        """Jobs finished, failed or were cancelled, each ``(record, small result or None, output or None)`` (their
        ObjectRefs stay until the result is taken: a restart runs a finished job again whose big result nobody
        took); in the same transaction, the jobs to ``forget`` and the cost records metered since the last
        write."""
        self._write("UPDATE jobs SET record = ?, value = ?, output = ? WHERE id = ?",
                    [(json.dumps(record), None if value is None else ray.cloudpickle.dumps(value),
                      None if output is None else json.dumps(output), record["id"]) for record, value, output in ends],
                    ("DELETE FROM jobs WHERE id = ?", [(i,) for i in forget]), self._cost_rows(costs))

    def ran(self, records: list[dict]) -> None:
        """Jobs ran on a lane (their results went straight to their clients): each finished, and taken."""
        self._write("INSERT OR IGNORE INTO jobs (id, record, taken) VALUES (?, ?, 1)",
                    [(record["id"], json.dumps(record)) for record in records])

    def taken(self, job_ids: list[str]) -> None:
        """Waiters took these jobs' results: a restart need not run them again (a small result stays, for a
        wait that Ray retries because its answer was lost with the dispatcher)."""
        self._write("UPDATE jobs SET refs = NULL, taken = 1 WHERE id = ?", [(i,) for i in job_ids])

    @staticmethod
    def _cost_rows(records: list[Record]) -> tuple[str, list[tuple]]:
        return "INSERT INTO costs (record) VALUES (?)", [(json.dumps(asdict(r)),) for r in records]

    def jobs(self) -> list[tuple[dict, tuple | None, object, list | None, bool]]:
        """Every job in submission order: ``(record, (program, args) or None, value or None, output or None,
        taken)``."""
        rows = self.db.execute("SELECT record, refs, value, output, taken FROM jobs ORDER BY seq").fetchall()
        return [(json.loads(record), refs and ray.cloudpickle.loads(refs), value and ray.cloudpickle.loads(value),
                 output and json.loads(output), bool(taken)) for record, refs, value, output, taken in rows]

    def cost_records(self) -> list[Record]:
        return [Record(**json.loads(r)) for (r,) in self.db.execute("SELECT record FROM costs ORDER BY seq")]
