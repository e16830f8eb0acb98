"""Lumi's settings: tiers (weights and queue caps), prices, and where state lives.

Read from ``$LUMI_CONFIG`` or ``~/.lumi/config.toml`` when present, then from environment
variables (``LUMI_TIER_<NAME>_WEIGHT``, ``LUMI_TIER_<NAME>_CAP``, ``LUMI_QUEUE_CAP``,
``LUMI_DISPATCH_LIMIT``, ``LUMI_PRICE_<DEVICE>``, ``LUMI_WORKERS``, ``LUMI_WORKER_GPUS``, ``LUMI_HOME``).
Defaults are documented in docs/architecture.md.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LumiError

DEFAULT_TIERS = {
    # name: (weight, queue cap)
    "enterprise": (8, 256),
    "api": (4, 128),
    "unlimited": (2, 128),
    "light": (1, 64),
    "free": (1, 16),
}

# USD per second of execution, from public on-demand list prices per GPU-hour (2025-2026):
# H100 about $3.95/h, H200 about $4.54/h, A100-80GB about $2.50/h, L4 about $0.80/h.
# The CPU fallback is billed like a small cloud vCPU pair.
DEFAULT_PRICES = {
    "H200": 4.54 / 3600,
    "H100": 3.95 / 3600,
    "A100": 2.50 / 3600,
    "L4": 0.80 / 3600,
    "GPU": 3.95 / 3600,
    "CPU": 0.10 / 3600,
}


@dataclass(frozen=True)
class Tier:
    name: str
    weight: float
    cap: int


@dataclass(frozen=True)
class Config:
    tiers: dict[str, Tier] = field(default_factory=dict)
    queue_cap: int = 512
    dispatch_limit: int = 2
    workers: int = 0  # worker actors the dispatcher keeps; 0: one per GPU (two on the CPU fallback)
    worker_gpus: float = 1.0  # GPUs each worker actor reserves (fractions share a GPU)
    prices: dict[str, float] = field(default_factory=dict)
    home: Path = Path.home() / ".lumi"

    def tier(self, name: str) -> Tier:
        try:
            return self.tiers[name]
        except KeyError:
            raise LumiError(f"unknown tier {name!r}; tiers are {', '.join(self.tiers)}") from None

    def price(self, device: str) -> float:
        """Price per second of execution on a device type (``"H100"``, ``"CPU"``, ...)."""
        for key, value in self.prices.items():
            if key.upper() in device.upper():
                return value
        return self.prices["GPU" if device.upper() != "CPU" else "CPU"]


def load_config(env: dict | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    home = Path(env.get("LUMI_HOME", Path.home() / ".lumi"))
    path = Path(env.get("LUMI_CONFIG", home / "config.toml"))
    data = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise LumiError(f"{path} is not valid TOML: {e}") from None
    tiers = {}
    table = data.get("tiers", {})
    for name in dict.fromkeys([*DEFAULT_TIERS, *table]):
        weight, cap = DEFAULT_TIERS.get(name, (1, 64))
        weight = float(table.get(name, {}).get("weight", weight))
        cap = int(table.get(name, {}).get("cap", cap))
        weight = float(env.get(f"LUMI_TIER_{name.upper()}_WEIGHT", weight))
        cap = int(env.get(f"LUMI_TIER_{name.upper()}_CAP", cap))
        if weight <= 0 or cap < 1:
            raise LumiError(f"tier {name}: weight must be positive and cap at least 1")
        tiers[name] = Tier(name, weight, cap)
    prices = {**DEFAULT_PRICES, **{k.upper(): float(v) for k, v in data.get("prices", {}).items()}}
    for key, value in env.items():
        if key.startswith("LUMI_PRICE_"):
            prices[key.removeprefix("LUMI_PRICE_")] = float(value)
    queue = data.get("queue", {})
    return Config(
        tiers=tiers,
        queue_cap=int(env.get("LUMI_QUEUE_CAP", queue.get("cap", 512))),
        dispatch_limit=int(env.get("LUMI_DISPATCH_LIMIT", queue.get("dispatch_limit", 2))),
        workers=int(env.get("LUMI_WORKERS", queue.get("workers", 0))),
        worker_gpus=float(env.get("LUMI_WORKER_GPUS", queue.get("worker_gpus", 1.0))),
        prices=prices,
        home=home,
    )
