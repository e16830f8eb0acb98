"""Lumi's settings, for every layer above the compiler: ``LUMI_*`` variables, and tiers, prices and
quotas from ``config.toml``.

Every ``LUMI_*`` variable is read here: :func:`setting`, :func:`members` and :func:`lumi_environment`
are the registry's accessors (declared in :mod:`lumi.settings`, the one table of docs/configuration.md),
re-exported so that the runtime, serving, the CLI and the notebook read settings through this module.
The registry itself sits below, in ``lumi/settings.py``, only because ``graph/`` and ``compiler/`` have
settings too (``LUMI_DEBUG``, ``LUMI_HOME``) and never import ``runtime/``.

:func:`load_config` adds ``$LUMI_CONFIG`` (default ``$LUMI_HOME/config.toml``) when present: tiers
(weights and queue caps), the queue, prices, quotas and limits. A variable overrides the file, which
overrides the built-in defaults below.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LumiError
from ..settings import SETTINGS, lumi_environment, members, setting

__all__ = ["DEFAULT_PRICES", "DEFAULT_QUOTAS", "DEFAULT_TIERS", "LOCAL_TENANT", "QUOTA_FIELDS", "SETTINGS", "Config",
           "Quota", "Tier", "load_config", "lumi_environment", "members", "setting"]


def _default(name: str):
    """A setting's declared default (where it is a plain value)."""
    return SETTINGS[name].default


DEFAULT_TIERS = {
    # name: (weight, queue cap, wait target in seconds)
    "enterprise": (8, 256, 10.0),
    "api": (4, 128, 30.0),
    "unlimited": (2, 128, 60.0),
    "light": (1, 64, 300.0),
    "free": (1, 16, 600.0),
}
OTHER_TIER = (1, 64, 60.0)  # a tier config.toml adds

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
    wait_target_s: float = OTHER_TIER[2]  # a queued job waiting longer is overdue: its tier goes first


@dataclass(frozen=True)
class Config:
    tiers: dict[str, Tier] = field(default_factory=dict)
    queue_cap: int = _default("LUMI_QUEUE_CAP")
    dispatch_limit: int = _default("LUMI_DISPATCH_LIMIT")
    workers: int = _default("LUMI_WORKERS")  # worker actors the dispatcher keeps; 0: one per GPU (two on CPU)
    worker_gpus: float = _default("LUMI_WORKER_GPUS")  # GPUs each worker actor reserves (fractions share a GPU)
    worker_memory: int = _default("LUMI_WORKER_MEMORY_BYTES")  # resident bytes a worker may reach (0: no limit)
    lanes: bool = _default("LUMI_LANES")  # short jobs of a client may go straight to a worker while nothing waits
    burst_pool: str | None = None  # the node label KEY=VALUE of burst capacity (None: no burst group)
    prices: dict[str, float] = field(default_factory=dict)
    quotas: dict[str, Quota] = field(default_factory=dict)
    home: Path = Path.home() / ".lumi"
    max_graph_nodes: int = _default("LUMI_MAX_GRAPH_NODES")  # serving refuses a deploy of a bigger graph
    max_compile_s: float = _default("LUMI_MAX_COMPILE_S")  # ... or of one whose kernels take longer to generate

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


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """The configuration in ``env`` (default ``os.environ``, read now) over ``config.toml`` over the defaults."""
    env = dict(os.environ if env is None else env)
    home = setting("LUMI_HOME", env)
    path = setting("LUMI_CONFIG", env)
    data = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise LumiError(f"{path} is not valid TOML: {e}") from None
    tiers = {}
    table = data.get("tiers", {})
    for name in dict.fromkeys([*DEFAULT_TIERS, *table]):
        weight, cap, wait = DEFAULT_TIERS.get(name, OTHER_TIER)
        weight = float(table.get(name, {}).get("weight", weight))
        cap = int(table.get(name, {}).get("cap", cap))
        wait = float(table.get(name, {}).get("wait_target_s", wait))
        weight = float(setting(f"LUMI_TIER_{name.upper()}_WEIGHT", env, default=weight))
        cap = int(setting(f"LUMI_TIER_{name.upper()}_CAP", env, default=cap))
        wait = float(setting(f"LUMI_TIER_{name.upper()}_WAIT_S", env, default=wait))
        if weight <= 0 or cap < 1 or wait <= 0:
            raise LumiError(f"tier {name}: weight and wait_target_s must be positive and cap at least 1")
        tiers[name] = Tier(name, weight, cap, wait)
    prices = {**DEFAULT_PRICES, **{k.upper(): float(v) for k, v in data.get("prices", {}).items()},
              **members("LUMI_PRICE_<DEVICE>", env)}
    quotas = {}
    for name in tiers:
        given = data.get("quotas", {}).get(name, {})
        values = dict(zip(QUOTA_FIELDS, DEFAULT_QUOTAS.get(name, DEFAULT_QUOTAS["light"])))
        values = {f: int(setting(f"LUMI_QUOTA_{name.upper()}_{f.upper()}", env, default=given.get(f, v)))
                  for f, v in values.items()}
        if min(values.values()) < 0:
            raise LumiError(f"quotas.{name}: every quota must be at least 0")
        quotas[name] = Quota(**values)
    def over_file(name: str, section: str, key: str):
        """The variable ``name``, else ``[section] key`` of the file, else the declared default."""
        return setting(name, env, default=data.get(section, {}).get(key, _default(name)))

    return Config(
        tiers=tiers,
        queue_cap=int(over_file("LUMI_QUEUE_CAP", "queue", "cap")),
        dispatch_limit=int(over_file("LUMI_DISPATCH_LIMIT", "queue", "dispatch_limit")),
        workers=int(over_file("LUMI_WORKERS", "queue", "workers")),
        worker_gpus=float(over_file("LUMI_WORKER_GPUS", "queue", "worker_gpus")),
        worker_memory=int(over_file("LUMI_WORKER_MEMORY_BYTES", "queue", "worker_memory_bytes")),
        lanes=bool(over_file("LUMI_LANES", "queue", "lanes")),
        burst_pool=over_file("LUMI_BURST_POOL", "queue", "burst_pool"),
        prices=prices,
        quotas=quotas,
        home=home,
        max_graph_nodes=int(over_file("LUMI_MAX_GRAPH_NODES", "limits", "max_graph_nodes")),
        max_compile_s=float(over_file("LUMI_MAX_COMPILE_S", "limits", "max_compile_s")),
    )
