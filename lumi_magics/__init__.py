"""Lumi's notebook layer: ``%%remote``, ``%%deploy`` and ``%lumi``. Load with ``%load_ext lumi_magics``."""

from __future__ import annotations


def load_ipython_extension(ipython) -> None:
    from . import line, remote

    ipython.register_magic_function(_bind(remote.remote, ipython, cell=True), "cell", "remote")
    ipython.register_magic_function(_bind(line.lumi, ipython), "line", "lumi")


def _bind(fn, shell, cell: bool = False):
    """Adapt ``fn(line, cell, shell=)`` to IPython; ``--help`` prints the magic's documentation."""

    def magic(line, cell=None):
        if {"-h", "--help"} & set(line.split()):
            print(magic.__doc__)
            return None
        return fn(line, cell, shell=shell) if cell is not None else fn(line, shell=shell)

    magic.__doc__ = fn.__doc__.replace(f"%{fn.__name__} ", f"%%{fn.__name__} ") if cell else fn.__doc__
    magic.__name__ = fn.__name__
    return magic
