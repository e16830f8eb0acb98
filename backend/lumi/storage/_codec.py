"""Values to bytes: arrays (and dicts of arrays) as safetensors, anything else by cloudpickle.

Decoding safetensors runs no code. Unpickling does, so a pickled value is decoded only for the tenant
that owns the store (``trusted``).
"""

from __future__ import annotations

import cloudpickle
import numpy as np
from safetensors.numpy import load, save

from ..errors import UntrustedValue, ValueTooLarge

KINDS = ("array", "arrays", "pickle")


def _tensors(arrays: dict[str, np.ndarray]) -> bytes | None:
    try:
        return save({k: v if v.flags.c_contiguous else v.copy(order="C") for k, v in arrays.items()})
    except Exception:  # a dtype safetensors has no code for (object, str, complex, ...): pickle it
        return None


def encode(value, what: str, limit: int) -> tuple[str, bytes]:
    """``(kind, bytes)`` for a value; ``what`` names it in the error when it is past ``limit`` bytes."""
    kind, data = "pickle", None
    if type(value) is np.ndarray:
        kind, data = "array", _tensors({"value": value})
    elif type(value) is dict and value and all(isinstance(k, str) and type(v) is np.ndarray for k, v in value.items()):
        kind, data = "arrays", _tensors(value)
    if data is None:
        kind, data = "pickle", cloudpickle.dumps(value)
    if len(data) > limit:
        raise ValueTooLarge(f"{what} is {len(data):,} bytes encoded; values are at most {limit:,} bytes "
                            "(LUMI_STORE_MAX_VALUE_BYTES). Put large files in a lumi.Volume")
    return kind, data


def untrusted(what: str) -> UntrustedValue:
    return UntrustedValue(f"{what} is a pickled Python value written by the store's tenant; unpickling runs code, "
                          "so only that tenant loads it (arrays load for anyone who may open the store)")


def decode(kind: str, data: bytes, trusted: bool, what: str):
    if kind == "array":
        return load(data)["value"]
    if kind == "arrays":
        return load(data)
    if not trusted:
        raise untrusted(what)
    return cloudpickle.loads(data)
