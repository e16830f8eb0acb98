"""The dtypes a graph may carry, and NumPy's promotion rules over them."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError

DTYPES = ("float16", "float32", "float64", "int32", "int64", "bool")
FLOATS = ("float16", "float32", "float64")


def dtype_name(dtype) -> str:
    """Canonical name of a NumPy dtype, refusing those a graph cannot carry."""
    name = np.dtype(dtype).name
    if name in ("int8", "int16", "uint8", "uint16", "uint32"):
        return "int32" if name != "uint32" else "int64"
    if name not in DTYPES:
        raise ShapeError(
            f"dtype {name} is not supported; use one of {', '.join(DTYPES)} (cast with .astype first)"
        )
    return name


def is_float(dtype: str) -> bool:
    return dtype in FLOATS


def promote(*dtypes: str) -> str:
    """NumPy's result type of combining arrays of these dtypes."""
    return dtype_name(np.result_type(*[np.dtype(d) for d in dtypes]))


def float_of(dtype: str) -> str:
    """The float dtype NumPy computes in for a unary float function of this dtype."""
    return dtype if is_float(dtype) else "float64"
