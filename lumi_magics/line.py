"""``%lumi``: status, connect, and the views other modules register."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable

from IPython.core.error import UsageError
from lumi.runtime import cluster, head

from .backend import start_backend, stop_backend

_COMMANDS: dict[str, tuple[Callable, str, Callable | None]] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register a ``%lumi NAME`` subcommand; ``fn(args, shell)`` returns what the cell shows."""

    def register(fn):
        _COMMANDS[name] = (fn, help, configure)
        return fn

    return register


def _parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<12} {help}" for name, (_, help, _) in _COMMANDS.items())
    parser = argparse.ArgumentParser(prog="%lumi", description="Lumi status and control (default: status).",
                                     epilog=f"commands:\n{listing}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help, configure) in _COMMANDS.items():
        p = sub.add_parser(name, description=help)
        if configure:
            configure(p)
    return parser


def lumi(line: str, shell=None):
    """Lumi status and control: ``%lumi status``, ``%lumi jobs``, ``%lumi stop``; ``%lumi --help`` lists them all."""
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
    shared = f"\nThe local backend, shared by every kernel and the panel: {head.record_path()}; `%lumi stop` stops it" \
        if info["local_backend"] else ""
    print(f"Lumi connected to {info['address']}: {info['nodes']} node(s), {info['cpus']:g} CPUs, "
          f"{info['gpus']:g} GPU slots{fallback}{shared}")
    return None


@command("connect", "join a Ray cluster (ray://host:10001, auto), or without an address the local backend",
         lambda p: p.add_argument("address", nargs="?", default=None))
def connect(args, shell):
    info = cluster.connect(args.address)
    print(f"Lumi connected to {info['address']}: {info['nodes']} node(s), {info['gpus']:g} GPU slots")
    return None


@command("stop", "stop the local backend (Ray head, dispatcher, gateway) for every kernel; the next cell starts it")
def stop(args, shell):
    record = stop_backend()
    print(f"Stopped the local Lumi backend at {record['address']}" if record
          else f"No local Lumi backend was running ({head.record_path()})")
    return None
