"""Lumi's notebook layer: ``%%remote``, ``%%deploy`` and ``%lumi``. Load with ``%load_ext lumi_magics``."""

from __future__ import annotations


def load_ipython_extension(ipython) -> None:
    from . import deploy, line, remote, views  # noqa: F401  (importing views registers %lumi jobs, costs, cluster)

    ipython.register_magic_function(_bind(remote.remote, ipython, cell=True), "cell", "remote")
    ipython.register_magic_function(_bind(deploy.deploy, ipython, cell=True), "cell", "deploy")
    ipython.register_magic_function(_bind(line.lumi, ipython), "line", "lumi")


def _jupyter_server_extension_points() -> list[dict]:
    """The Jupyter server extension behind the Lumi panel (``lumi_magics.server``)."""
    return [{"module": "lumi_magics.server"}]


def _jupyter_labextension_paths() -> list[dict]:
    """The prebuilt JupyterLab extension (the Lumi sidebar panel) shipped inside this package."""
    return [{"src": "labextension", "dest": "lumi-panel"}]


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
