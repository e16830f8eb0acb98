"""``%lumi``: status, connect, and the views other modules register."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable

from IPython.core.error import UsageError
from lumi.runtime import cluster, jobs

from .backend import start_backend

_COMMANDS: dict[str, tuple[Callable, str, Callable | None]] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register a ``%lumi NAME`` subcommand; ``fn(args, shell)`` returns what the cell shows."""

    def register(fn):
        _COMMANDS[name] = (fn, help, configure)
        return fn

    return register


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="%lumi", description="Lumi status and control.", add_help=True)
    sub = parser.add_subparsers(dest="command")
    for name, (_, help, configure) in _COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        if configure:
            configure(p)
    return parser


def lumi(line: str, shell=None):
    """Lumi status and control: ``%lumi status``, ``%lumi connect ray://host:10001``, ``%lumi --help``."""
    parser = _parser()
    try:
        args = parser.parse_args(shlex.split(line) or ["status"])
    except SystemExit as e:
        if e.code:
            raise UsageError(f"see %lumi --help ({line!r} is not a valid command)") from None
        return None
    fn = _COMMANDS[args.command][0]
    return fn(args, shell)


@command("status", "where Lumi is connected and what the cluster holds")
def status(args, shell):
    start_backend()
    info = cluster.info()
    fallback = "" if info["cuda_here"] else " (no CUDA device here: running on the CPU fallback)"
    print(f"Lumi connected to {info['address']}: {info['nodes']} node(s), {info['cpus']:g} CPUs, "
          f"{info['gpus']:g} GPU slots{fallback}")
    return None


@command("connect", "join a Ray cluster (ray://host:10001, auto) or start the embedded one",
         lambda p: p.add_argument("address", nargs="?", default=None))
def connect(args, shell):
    jobs.reset()
    info = cluster.connect(args.address)
    print(f"Lumi connected to {info['address']}: {info['nodes']} node(s), {info['gpus']:g} GPU slots")
    return None
