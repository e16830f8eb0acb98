"""Every ``LUMI_*`` setting: one registry, read in one place.

Each setting is declared once below (:data:`SETTINGS`): its name, its kind (how its text is parsed and
what form it takes), its default, the ``config.toml`` key it overrides (if any) and a one-line doc.
Patterned families (``LUMI_PRICE_<DEVICE>``, ``LUMI_TIER_<NAME>_WEIGHT``, ``LUMI_QUOTA_<TIER>_<FIELD>``,
...) are declared once as a family. docs/configuration.md is this registry as one table
(:func:`markdown_table` renders it; tests/test_settings.py checks that both agree).

Reading: ``setting("LUMI_GATEWAY_PORT")`` is the value of one variable, parsed, or its default;
``members("LUMI_PRICE_<DEVICE>")`` the set members of a family; ``lumi_environment()`` every
``LUMI_*`` variable as text, for forwarding to the Ray actors that read them in turn. Each reads
``os.environ`` (or the mapping it is given) when called, never at import, so a setting changed at run
time (a test's ``monkeypatch.setenv``, the gateway actor taking its creator's environment) applies.
An empty variable counts as unset. A value that does not parse is a :class:`~lumi.errors.LumiError`
naming the variable and the form expected. No other module reads a ``LUMI_*`` variable itself.

Why here and not in ``runtime/config.py``: ``graph/`` and ``compiler/`` sit below ``runtime/`` and
never import it (docs/architecture.md, tests/test_layers.py), yet they have settings of their own
(``LUMI_DEBUG``, ``LUMI_HOME`` for the kernel cache). So the registry is a bottom-layer module that
imports nothing of Lumi but :mod:`lumi.errors`. ``runtime/config.py`` builds on it: it re-exports these
accessors for every layer above the compiler (runtime, serving, the CLI, the notebook), which read
settings through it, and adds ``config.toml`` (tiers, queue, prices, quotas, limits) under the
environment in :func:`~lumi.runtime.config.load_config`.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LumiError

PREFIX = "LUMI_"


@dataclass(frozen=True)
class Kind:
    """How a setting's text becomes a value: ``parse`` raises ValueError where the text is not ``form``."""

    form: str
    parse: Callable[[str], Any]


@functools.cache
def _pattern(name: str) -> re.Pattern:
    parts = re.split(r"<[A-Z]+>", name)
    return re.compile("(.+)".join(re.escape(p) for p in parts))


def _bounded(convert: Callable[[str], Any], minimum: float | None) -> Callable[[str], Any]:
    def parse(text: str):
        value = convert(text)
        if value != value or (minimum is not None and value < minimum):  # NaN, or below the minimum
            raise ValueError(text)
        return value

    return parse


def integer(minimum: int | None = 0) -> Kind:
    more = "" if minimum is None else f" ≥ {minimum}"
    return Kind(f"a whole number{more}", _bounded(int, minimum))


def number(minimum: float | None = 0) -> Kind:
    more = "" if minimum is None else f" ≥ {minimum:g}"
    return Kind(f"a number{more}", _bounded(float, minimum))


def _flag(text: str) -> bool:
    value = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
             "off": False}.get(text.strip().lower())
    if value is None:
        raise ValueError(text)
    return value


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


def _json_object(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(text)
    return value


TEXT = Kind("text", str)
PATH = Kind("a path", Path)
FLAG = Kind("1 or 0 (or true/false, yes/no, on/off)", _flag)
PORT = Kind("a port number, 0 to 65535", _port)
JSON_OBJECT = Kind("a JSON object", _json_object)


@dataclass(frozen=True)
class Setting:
    """One ``LUMI_*`` variable, or a family of them (``name`` with ``<PLACEHOLDERS>``)."""

    name: str
    kind: Kind
    default: Any  # the value when unset (None: no value), or a function of the environment giving it
    doc: str
    shown: str = ""  # the default as docs/configuration.md shows it, where the value itself would not say it
    toml: str = ""  # the config.toml key it overrides, if any

    @property
    def family(self) -> bool:
        return "<" in self.name

    @property
    def pattern(self) -> re.Pattern:
        """The variable names this declaration covers (placeholders are captured)."""
        return _pattern(self.name)

    def default_in(self, env: Mapping[str, str]) -> Any:
        return self.default(env) if callable(self.default) else self.default

    def shown_default(self) -> str:
        if self.shown:
            return self.shown
        if self.default is None:
            return "unset"
        if isinstance(self.default, bool):
            return f"`{int(self.default)}`"
        return f"`{self.default:g}`" if isinstance(self.default, float) else f"`{self.default}`"


def _home(env: Mapping[str, str]) -> Path:
    return setting("LUMI_HOME", env)


MIB = 1 << 20
_DECLARED = [
    # where state lives
    Setting("LUMI_HOME", PATH, lambda env: Path.home() / ".lumi",
            "All of Lumi's state: the backend record, keys, gateway.json, the model store, compiled kernels, "
            "config.toml; shared by every checkout and JupyterLab of the user", shown="`~/.lumi`"),
    Setting("LUMI_CONFIG", PATH, lambda env: _home(env) / "config.toml",
            "The TOML file of tiers, queue, prices, quotas and limits (read when it exists)",
            shown="`$LUMI_HOME/config.toml`"),
    Setting("LUMI_MODEL_STORE", TEXT, lambda env: str(_home(env) / "models"),
            "The model store's root: a directory, or `s3://bucket/prefix` (s3fs reads the usual AWS variables)",
            shown="`$LUMI_HOME/models`"),
    Setting("LUMI_JOURNAL", PATH, lambda env: _home(env) / "journal",
            "Where the dispatcher journals accepted jobs and costs (SQLite, one file per dispatcher name); on a "
            "cluster, a path on storage that survives the head node", shown="`$LUMI_HOME/journal`"),
    Setting("LUMI_JOURNAL_MAX_BYTES", integer(64 << 10), 1 << 30,
            "The most disk a dispatcher's journal may take; past it submits are refused (`JournalError`), as on a "
            "full disk", shown="1 GiB"),
    # the cluster and the local backend
    Setting("LUMI_RAY_ADDRESS", TEXT, None,
            "The Ray cluster to join (`ray://host:10001`, `auto`, `host:port`); when set, the gateway also asks "
            "Ray's autoscaler for replicas", shown="unset (the local backend)"),
    Setting("LUMI_AUTOSTART", FLAG, True, "0: the Jupyter server extension does not start the local backend"),
    Setting("LUMI_HEAD_CPUS", integer(1), lambda env: os.cpu_count() or 1,
            "CPUs the local backend's Ray head offers", shown="every CPU"),
    Setting("LUMI_HEAD_GPUS", number(), None,
            "GPUs the local head offers (logical slots run the CPU fallback)",
            shown="the CUDA devices, else 4 logical slots"),
    Setting("LUMI_OBJECT_STORE_BYTES", integer(1), 200 * MIB, "The local head's Ray object store",
            shown="200 MiB"),
    # scheduling
    Setting("LUMI_QUEUE_CAP", integer(1), 512, "Queued jobs allowed in all tiers together", toml="[queue] cap"),
    Setting("LUMI_DISPATCH_LIMIT", integer(1), 2,
            "Calls a worker holds at once (running + dispatched), each one job or a batch of short ones",
            toml="[queue] dispatch_limit"),
    Setting("LUMI_LANES", FLAG, True,
            "1: while nothing is queued, a client process sends its short graph jobs (measured at 2 ms or less) "
            "straight to a worker the dispatcher opened to it, one actor call each; any queued job closes every lane. "
            "0: every job goes through the queue", toml="[queue] lanes"),
    Setting("LUMI_WORKERS", integer(), 0,
            "Worker actors the dispatcher keeps; 0: one per GPU slot (two on the CPU fallback)",
            toml="[queue] workers"),
    Setting("LUMI_WORKER_GPUS", number(), 1.0, "GPUs each worker actor reserves (fractions share a GPU)",
            toml="[queue] worker_gpus"),
    Setting("LUMI_BURST_POOL", TEXT, None,
            "The Ray node label `KEY=VALUE` of burst capacity (a borrowed node pool): device workers start there "
            "only while a tier is past its wait target, and stop when the queues drain", shown="unset (no burst group)",
            toml="[queue] burst_pool"),
    Setting("LUMI_WORKER_MEMORY_BYTES", integer(), 0,
            "Resident memory a worker may reach; a job past it fails with `OutOfMemory` and its worker is replaced. "
            "`0`: no limit of Lumi's (the host's and Ray's memory monitor still apply)",
            toml="[queue] worker_memory_bytes"),
    Setting("LUMI_TIER_<NAME>_WEIGHT", number(None), None,
            "A tier's scheduling weight (also how tiers rank: a key may use its own tier and those below)",
            shown="enterprise 8, api 4, unlimited 2, light 1, free 1; others 1", toml="[tiers.<name>] weight"),
    Setting("LUMI_TIER_<NAME>_CAP", integer(None), None, "Queued jobs allowed in a tier",
            shown="enterprise 256, api 128, unlimited 128, light 64, free 16; others 64", toml="[tiers.<name>] cap"),
    Setting("LUMI_TIER_<NAME>_WAIT_S", number(None), None,
            "A tier's wait target: a job queued longer is overdue, and tiers with an overdue job are served first "
            "(docs/architecture.md)", shown="enterprise 10, api 30, unlimited 60, light 300, free 600; others 60",
            toml="[tiers.<name>] wait_target_s"),
    Setting("LUMI_QUOTA_<TIER>_<FIELD>", integer(None), None,
            "What one tenant with a key of that tier may hold; FIELD is REPLICAS, GPUS, ENDPOINTS, JOBS or "
            "STORE_BYTES", shown="by tier (docs/security.md)", toml="[quotas.<tier>] <field>"),
    Setting("LUMI_PRICE_<DEVICE>", number(), None,
            "USD per second of execution on a device type (H200, H100, A100, L4, GPU, CPU, ...)",
            shown="list prices (`runtime/config.py`)", toml="[prices] <DEVICE>"),
    # serving
    Setting("LUMI_GATEWAY_HOST", TEXT, "127.0.0.1", "The interface the gateway listens on (`0.0.0.0` on a head node)"),
    Setting("LUMI_GATEWAY_PORT", PORT, 0, "The gateway's port; `0`: the one `gateway.json` recorded when it is "
            "free (the gateway keeps its address across restarts), else any free port", shown="`0`"),
    Setting("LUMI_MAX_BODY_BYTES", integer(1), 16 * MIB, "The largest inference request body (413 above)",
            shown="16 MiB"),
    Setting("LUMI_MAX_OUTPUT_BYTES", integer(1), 16 * MIB,
            "The largest answer an inference may produce (413, refused before it runs where shapes say)",
            shown="16 MiB"),
    Setting("LUMI_REQUEST_TIMEOUT_S", number(), 120.0, "Seconds an inference request waits for a replica before a 429"),
    Setting("LUMI_REPLICA_CPUS", number(), 1.0, "CPUs a CPU-only endpoint replica reserves"),
    Setting("LUMI_MAX_GRAPH_NODES", integer(), 20_000, "The biggest graph a deploy admits, in nodes",
            toml="[limits] max_graph_nodes"),
    Setting("LUMI_MAX_COMPILE_S", number(), 10.0,
            "Seconds a deployed graph's kernels may take to generate", toml="[limits] max_compile_s"),
    # stores (lumi.Dict, lumi.Queue, volumes)
    Setting("LUMI_STORE", TEXT, lambda env: str(_home(env) / "store"),
            "Where stores persist: a directory, or any fsspec URL (`s3://bucket/lumi`)", shown="`$LUMI_HOME/store`"),
    Setting("LUMI_STORE_OPTIONS", JSON_OBJECT, lambda env: {},
            "fsspec storage options for `LUMI_STORE` (`{\"endpoint_url\": ...}`)", shown="`{}`"),
    Setting("LUMI_STORE_MAX_VALUE_BYTES", integer(1), 64 * MIB, "The largest Dict value or Queue item, encoded",
            shown="64 MiB"),
    Setting("LUMI_QUEUE_MAXSIZE", integer(1), 10_000, "Items a Queue holds unless it is made with `maxsize=`"),
    Setting("LUMI_TENANT", TEXT, None,
            "The tenant store calls act for where no key is given (a worker sets it while a job runs)",
            shown="unset (`local`)"),
    # clients
    Setting("LUMI_GATEWAY_URL", TEXT, None,
            "The gateway the `lumi` CLI talks to (with `LUMI_KEY`)", shown="unset (`$LUMI_HOME/gateway.json`)"),
    Setting("LUMI_KEY", TEXT, None,
            "The API key of the `lumi` CLI, and of the curl lines `%%deploy` prints",
            shown="unset (the local admin key)"),
    # debugging
    Setting("LUMI_DEBUG", FLAG, False,
            "1: print every generated kernel's source, and show Lumi's own frames in notebook tracebacks"),
]
SETTINGS: dict[str, Setting] = {s.name: s for s in _DECLARED}
_FAMILIES = [s for s in _DECLARED if s.family]


def declaration(name: str) -> Setting:
    """The declaration covering ``name``: its own, or its family's. KeyError for an undeclared name."""
    if name in SETTINGS:
        return SETTINGS[name]
    for family in _FAMILIES:
        if family.pattern.fullmatch(name):
            return family
    raise KeyError(f"{name} is not a declared setting; declare it in lumi/settings.py (and docs/configuration.md)")


def _parse(declared: Setting, name: str, text: str) -> Any:
    try:
        return declared.kind.parse(text)
    except (TypeError, ValueError):
        raise LumiError(f"{name}={text!r} is not valid: expected {declared.kind.form} ({declared.doc}); "
                        "fix or unset it") from None


_UNSET = object()


def setting(name: str, env: Mapping[str, str] | None = None, *, default: Any = _UNSET) -> Any:
    """The value of the ``LUMI_*`` variable ``name`` in ``env`` (default ``os.environ``, read now), parsed;
    when it is unset or empty, ``default`` if given (a ``config.toml`` value, say), else the declared default."""
    declared = declaration(name)
    env = os.environ if env is None else env
    text = env.get(name)
    if text is None or text == "":
        return declared.default_in(env) if default is _UNSET else default
    return _parse(declared, name, text)


def members(family: str, env: Mapping[str, str] | None = None) -> dict:
    """The set variables of ``family`` (``"LUMI_PRICE_<DEVICE>"``), parsed, by what fills the placeholder
    (a tuple of them where there are several): ``{"H100": 0.0011}``."""
    declared = SETTINGS[family]
    env = os.environ if env is None else env
    found = {}
    for name, text in env.items():
        match = declared.pattern.fullmatch(name)
        if match and text != "":
            groups = match.groups()
            found[groups[0] if len(groups) == 1 else groups] = _parse(declared, name, text)
    return found


def lumi_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every ``LUMI_*`` variable, as text: what a process hands the Ray actors it creates, whose settings they are."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if k.startswith(PREFIX)}


def markdown_table() -> str:
    """The settings as docs/configuration.md shows them."""
    rows = ["| variable | value | default | config.toml | meaning |", "| --- | --- | --- | --- | --- |"]
    for s in _DECLARED:
        toml = f"`{s.toml}`" if s.toml else ""
        rows.append(f"| `{s.name}` | {s.kind.form} | {s.shown_default()} | {toml} | {s.doc} |")
    return "\n".join(rows)
