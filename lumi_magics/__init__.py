"""Lumi's notebook layer: ``%%remote``, ``%%deploy`` and ``%lumi``. Load with ``%load_ext lumi_magics``."""

from __future__ import annotations

import re
import textwrap

from IPython.core.error import UsageError
from lumi.errors import LumiError

from .tracebacks import shorten

_HELP = re.compile(r"(^|\s)(-h|--help)(\s|$)")
_ONNX = re.compile(r"(^|\s)--onnx(\s|=)")  # %%deploy NAME --onnx PATH needs no cell body


def load_ipython_extension(ipython) -> None:
    from . import deploy, line, remote, schedule_views, store_views, views  # noqa: F401  (they register %lumi views)

    for fn in (remote.remote, deploy.deploy):
        ipython.register_magic_function(_cell_magic(fn, ipython), "line_cell", fn.__name__)

    def lumi(text: str):
        try:
            return line.lumi(text, shell=ipython)
        except LumiError as e:
            raise shorten(e)  # noqa: B904

    lumi.__doc__ = line.lumi.__doc__
    ipython.register_magic_function(lumi, "line", "lumi")
    if _help_cells not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(_help_cells)


def _jupyter_server_extension_points() -> list[dict]:
    """The Jupyter server extension behind the Lumi panel (``lumi_magics.server``)."""
    return [{"module": "lumi_magics.server"}]


def _jupyter_labextension_paths() -> list[dict]:
    """The prebuilt JupyterLab extension (the Lumi sidebar panel) shipped inside this package."""
    return [{"src": "labextension", "dest": "lumi-panel"}]


def help_text(fn) -> str:
    """A cell magic's help: usage, description with its example, options (from its magic_arguments)."""
    parser = fn.parser
    parser.prog = f"%{fn.__name__}"  # IPython's usage line adds the other '%'
    usage, rest = parser.format_help().removeprefix("::\n\n").split("\n\n", 1)
    rest = rest.replace("::\n", ":\n").replace("``", "")
    return "usage: " + textwrap.dedent(usage).strip() + "\n\n" + rest.rstrip() + "\n"


def _help_cells(lines: list[str]) -> list[str]:
    """``%%remote --help`` (or ``%%deploy --help``) answers with help even when the cell body is empty:
    IPython refuses an empty cell magic body before the magic runs, so such a cell becomes the line form."""
    if lines and re.match(r"%%(remote|deploy)\b", lines[0]) and _HELP.search(lines[0]):
        return [lines[0][1:].rstrip("\n") + "\n"]
    if lines and re.match(r"%%deploy\b", lines[0]) and _ONNX.search(lines[0]) and not "".join(lines[1:]).strip():
        return [lines[0][1:].rstrip("\n") + "\n"]
    return lines


def _cell_magic(fn, shell):
    """Adapt ``fn(line, cell, shell=)`` to IPython as a line-and-cell magic: ``--help`` prints the
    magic's help in both forms; the line form does nothing else. Lumi's errors show the user's lines only."""

    def magic(line: str, cell: str | None = None):
        if _HELP.search(line):
            print(help_text(fn))
            return None
        if cell is None and fn.__name__ == "deploy" and _ONNX.search(line):
            cell = ""
        if cell is None:
            raise UsageError(f"%%{fn.__name__} is a cell magic: put it on the first line of a cell, above the code "
                             f"(%{fn.__name__} --help shows how)")
        try:
            return fn(line, cell, shell=shell)
        except LumiError as e:
            raise shorten(e)  # noqa: B904  (the same error, re-raised with IPython's short rendering)

    magic.__doc__ = help_text(fn)
    magic.__name__ = fn.__name__
    return magic
