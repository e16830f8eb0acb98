"""Lumi errors in a notebook: the user's own lines and the message, Lumi's internal frames only with LUMI_DEBUG=1."""

from __future__ import annotations

import os
import sysconfig
import traceback

import IPython
import lumi
import numpy as np
from lumi.errors import LumiError
from lumi.graph.tensor import CELL_FILENAME
from lumi.runtime.config import setting

_INTERNAL = (*(os.path.dirname(os.path.abspath(m.__file__)) for m in (lumi, np, IPython)),
             os.path.dirname(os.path.abspath(__file__)), sysconfig.get_paths()["stdlib"])


def _user_frame(frame: traceback.FrameSummary) -> bool:
    """The user's code: the traced cell, notebook cells and their functions, the user's own modules;
    not Lumi, NumPy, IPython, the standard library or installed packages, nor the line calling the magic."""
    if frame.filename == CELL_FILENAME:
        return True
    path = os.path.abspath(frame.filename)
    return not (path.startswith(_INTERNAL) or "site-packages" in path
                or (frame.line or "").startswith("get_ipython()."))


def _user_frames(error: BaseException) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(error.__traceback__) if _user_frame(f)]


def short_traceback(error: BaseException) -> list[str]:
    """The lines IPython shows for ``error``: the cell lines that led to it, then its message, then the
    messages of what caused it (one line each)."""
    lines = ["Traceback (Lumi's internal frames are hidden; set LUMI_DEBUG=1 to show them):"]
    for frame in _user_frames(error):
        where = "cell" if frame.filename == CELL_FILENAME else f"{frame.filename}, in {frame.name}"
        lines.append(f"  {where}, line {frame.lineno}")
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    lines.append(f"{type(error).__name__}: {error}")
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    while cause is not None:
        lines.append(f"  caused by {type(cause).__name__}: {cause}")
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return lines


def shorten(error: BaseException) -> BaseException:
    """Give ``error`` IPython's ``_render_traceback_`` hook with the short form, unless LUMI_DEBUG is set."""
    try:
        debug = setting("LUMI_DEBUG")
    except LumiError:  # a bad LUMI_DEBUG is reported where it is used; it must not break showing this error
        debug = False
    if not debug:
        error._render_traceback_ = lambda: short_traceback(error)
    return error
