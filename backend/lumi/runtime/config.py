"""Lumi's settings: tiers (weights and queue caps), prices, and where state lives.

Read from ``$LUMI_CONFIG`` or ``~/.lumi/config.toml`` when present, then from environment
variables (``LUMI_TIER_<NAME>_WEIGHT``, ``LUMI_TIER_<NAME>_CAP``, ``LUMI_QUEUE_CAP``,
``LUMI_DISPATCH_LIMIT``, ``LUMI_PRICE_<DEVICE>``, ``LUMI_WORKERS``, ``LUMI_WORKER_GPUS``, ``LUMI_HOME``,
``LUMI_QUOTA_<TIER>_<FIELD>``, ``LUMI_MAX_GRAPH_NODES``, ``LUMI_MAX_COMPILE_S``).
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


# Per tenant, by the tier of its key: (replicas, GPUs, endpoints, queued jobs, store bytes).
DEFAULT_QUOTAS = {
    "enterprise": (64, 32, 100, 256, 64 << 30),
    "api": (16, 8, 50, 128, 8 << 30),
    "unlimited": (16, 8, 50, 128, 8 << 30),
    "light": (4, 1, 10, 32, 1 << 30),
    "free": (4, 1, 3, 8, 256 << 20),
}
QUOTA_FIELDS = ("replicas", "gpus", "endpoints", "jobs", "store_bytes")
LOCAL_TENANT = "local"  # the machine's own tenant (its admin key's, and the notebooks' default): no quotas


@dataclass(frozen=True)
class Quota:
    """What one tenant may hold at once: replicas (max_replicas summed over its endpoints), GPU replicas,
    endpoints, queued jobs, and bytes of stored model versions."""

    replicas: int
    gpus: int
    endpoints: int
    jobs: int
    store_bytes: int


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
    quotas: dict[str, Quota] = field(default_factory=dict)
    home: Path = Path.home() / ".lumi"
    max_graph_nodes: int = 20_000  # serving refuses a deploy of a bigger graph
    max_compile_s: float = 10.0  # ... or of one whose kernels take longer than this to generate

    def tier(self, name: str) -> Tier:
        try:
            return self.tiers[name]
        except KeyError:
            raise LumiError(f"unknown tier {name!r}; tiers are {', '.join(self.tiers)}") from None

    def quota(self, tier: str) -> Quota:
        """The per-tenant quota of keys in ``tier``."""
        self.tier(tier)
        return self.quotas[tier]

    def rank(self, tier: str) -> tuple[float, int]:
        """Orders tiers: a key may use its own tier and those ranked below it (by weight, then cap)."""
        t = self.tier(tier)
        return t.weight, t.cap

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
    quotas = {}
    for name in tiers:
        given = data.get("quotas", {}).get(name, {})
        values = dict(zip(QUOTA_FIELDS, DEFAULT_QUOTAS.get(name, DEFAULT_QUOTAS["light"])))
        values = {f: int(env.get(f"LUMI_QUOTA_{name.upper()}_{f.upper()}", given.get(f, v))) for f, v in values.items()}
        if min(values.values()) < 0:
            raise LumiError(f"quotas.{name}: every quota must be at least 0")
        quotas[name] = Quota(**values)
    queue, limits = data.get("queue", {}), data.get("limits", {})
    return Config(
        tiers=tiers,
        queue_cap=int(env.get("LUMI_QUEUE_CAP", queue.get("cap", 512))),
        dispatch_limit=int(env.get("LUMI_DISPATCH_LIMIT", queue.get("dispatch_limit", 2))),
        workers=int(env.get("LUMI_WORKERS", queue.get("workers", 0))),
        worker_gpus=float(env.get("LUMI_WORKER_GPUS", queue.get("worker_gpus", 1.0))),
        prices=prices,
        quotas=quotas,
        home=home,
        max_graph_nodes=int(env.get("LUMI_MAX_GRAPH_NODES", limits.get("max_graph_nodes", 20_000))),
        max_compile_s=float(env.get("LUMI_MAX_COMPILE_S", limits.get("max_compile_s", 10.0))),
    )
