"""The README's list of supported NumPy functions is the tracer's own tables, no more and no less."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import scipy.special
from lumi.graph.numpy_api import supported_names
from lumi.graph.tensor import Tensor

README = (Path(__file__).parents[2] / "README.md").read_text()
BULLET = README[README.index("- `%%remote [--python]") :].split("\n- ", 1)[0]


def test_readme_lists_exactly_the_supported_functions():
    listed = re.search(r"Supported NumPy \([^)]*\):\s*`([^`]*)`", BULLET).group(1).split()
    assert sorted(listed) == listed, "keep the README list sorted"
    assert set(listed) - set(supported_names()) == set(), "listed in the README but not traced"
    assert set(supported_names()) - set(listed) == set(), "traced but missing from the README"


def test_every_supported_name_is_a_numpy_function():
    for name in supported_names():
        home = scipy.special if name == "erf" else np
        assert callable(functools.reduce(getattr, name.split("."), home)), name


def test_readme_methods_exist_on_the_tensor():
    methods = re.search(r"the methods `([^`]*)`", BULLET).group(1).split()
    assert methods and all(hasattr(Tensor, m.lstrip(".")) for m in methods)
