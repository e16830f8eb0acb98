"""Every ``LUMI_*`` setting is declared once (``lumi.settings``), read only through the registry, and
documented in the one table of docs/configuration.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from lumi.errors import LumiError
from lumi.runtime.config import load_config
from lumi.settings import SETTINGS, declaration, lumi_environment, markdown_table, members, setting

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted((ROOT / "backend" / "lumi").rglob("*.py")), *sorted((ROOT / "lumi_magics").rglob("*.py"))]
REGISTRY = ROOT / "backend" / "lumi" / "settings.py"
TABLE = ROOT / "docs" / "configuration.md"
# LUMI_* names in the code that are not environment variables: C macros of the generated kernels
NOT_SETTINGS = {"LUMI_MVEC", "LUMI_KERNEL_SYMBOL"}


def _lumi_text(node: ast.AST) -> bool:
    """A string literal (or an f-string's leading text) that starts with ``LUMI_``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.startswith("LUMI_")
    return isinstance(node, ast.JoinedStr) and bool(node.values) and _lumi_text(node.values[0])


def _names_environ(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr in ("environ", "environb", "getenv")
               or isinstance(n, ast.Name) and n.id in ("environ", "getenv") for n in ast.walk(node))


def env_reads(source: str) -> list[int]:
    """Lines that read a ``LUMI_*`` variable without the registry: ``os.environ.get("LUMI_X")``,
    ``os.environ["LUMI_X"]``, ``os.getenv(f"LUMI_{x}")``, ``"LUMI_X" in os.environ``, a filter of the
    environment by the ``LUMI_`` prefix, and ``.get("LUMI_X")`` / ``["LUMI_X"]`` on a copy of it."""
    lines = set()
    for node in ast.walk(ast.parse(source)):
        call = isinstance(node, ast.Call) and bool(node.args) and _lumi_text(node.args[0]) and (
            isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "pop", "setdefault", "getenv",
                                                                       "startswith")
            or isinstance(node.func, ast.Name) and node.func.id == "getenv")
        lookup = isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _lumi_text(node.slice) and (
            ast.unparse(node.value).split(".")[-1] != "SETTINGS")  # SETTINGS["LUMI_X"] is the declaration
        scan = isinstance(node, (ast.Compare, ast.DictComp, ast.ListComp, ast.SetComp, ast.GeneratorExp)) and (
            _names_environ(node) and any(_lumi_text(n) for n in ast.walk(node)))
        if call or lookup or scan:
            lines.add(node.lineno)
    return sorted(lines)


def test_the_scan_sees_every_way_of_reading_the_environment():
    source = """
import os
from os import environ, getenv
a = os.environ.get("LUMI_A")
b = os.environ["LUMI_B"]
c = os.getenv(f"LUMI_C_{a}")
d = "LUMI_D" in os.environ
e = {k: v for k, v in os.environ.items() if k.startswith("LUMI_")}
env = dict(os.environ)
f = env.get("LUMI_F", 1)
g = getenv("LUMI_G")
os.environ["LUMI_WRITTEN"] = "1"  # writing is not reading
h = "LUMI_MVEC"  # nor is naming
i = SETTINGS["LUMI_I"].default  # nor looking at a declaration
"""
    assert env_reads(source) == [4, 5, 6, 7, 8, 10, 11]


def test_only_the_registry_reads_lumi_variables():
    offences = []
    for path in SOURCES:
        if path != REGISTRY:
            offences += [f"{path.relative_to(ROOT)}:{n}" for n in env_reads(path.read_text())]
    assert not offences, ("these read LUMI_* variables themselves; read them with lumi.runtime.config.setting() "
                          "(lumi.settings.setting() in graph/ and compiler/), or lumi_environment() to forward "
                          "them all:\n" + "\n".join(offences))


def _mentions(path: Path) -> set[str]:
    return {m.rstrip("_") for m in re.findall(r"\bLUMI_[A-Z0-9_]*[A-Z0-9]", path.read_text())}


def _declared_or_family_head(name: str) -> bool:
    try:
        declaration(name)
        return True
    except KeyError:  # a name built at run time: f"LUMI_TIER_{name}_CAP" mentions LUMI_TIER
        return any(s.family and s.name.split("<")[0].rstrip("_") == name for s in SETTINGS.values())


def test_every_lumi_name_in_the_code_is_declared():
    undeclared = sorted({f"{name} ({path.relative_to(ROOT)})" for path in SOURCES for name in _mentions(path)
                         if name not in NOT_SETTINGS and not _declared_or_family_head(name)})
    assert not undeclared, "declare these in backend/lumi/settings.py (and docs/configuration.md):\n" + "\n".join(
        undeclared)


def _table_rows() -> list[str]:
    return [line for line in TABLE.read_text().splitlines() if line.startswith("| `LUMI_")]


def test_the_docs_table_lists_every_setting_and_nothing_else():
    documented = [re.match(r"\| `([^`]+)`", row).group(1) for row in _table_rows()]
    assert sorted(set(SETTINGS) - set(documented)) == [], "registered but missing from docs/configuration.md"
    assert sorted(set(documented) - set(SETTINGS)) == [], "in docs/configuration.md but not registered"
    assert len(documented) == len(set(documented)), "a setting is listed twice"


def test_the_docs_table_is_the_registry():
    generated = [line for line in markdown_table().splitlines() if line.startswith("| `LUMI_")]
    assert _table_rows() == generated, (
        "docs/configuration.md's table differs from the registry: paste "
        "`python -c \"import lumi.settings as s; print(s.markdown_table())\"` into it")


def test_no_declared_name_is_covered_by_a_family():
    families = [s for s in SETTINGS.values() if s.family]
    for s in SETTINGS.values():
        if not s.family:
            assert not any(f.pattern.fullmatch(s.name) for f in families), s.name


def test_a_bad_value_names_the_variable_and_the_form(monkeypatch):
    monkeypatch.setenv("LUMI_GATEWAY_PORT", "abc")
    with pytest.raises(LumiError, match=r"LUMI_GATEWAY_PORT='abc' is not valid: expected a port number, 0 to 65535"):
        setting("LUMI_GATEWAY_PORT")
    with pytest.raises(LumiError, match=r"LUMI_GATEWAY_PORT='70000'.*expected a port number"):
        setting("LUMI_GATEWAY_PORT", {"LUMI_GATEWAY_PORT": "70000"})
    with pytest.raises(LumiError, match=r"LUMI_DEBUG='maybe'.*expected 1 or 0"):
        setting("LUMI_DEBUG", {"LUMI_DEBUG": "maybe"})
    with pytest.raises(LumiError, match=r"LUMI_PRICE_H100='cheap'.*expected a number"):
        load_config({"LUMI_PRICE_H100": "cheap"})
    with pytest.raises(LumiError, match=r"LUMI_TIER_FREE_CAP='x'.*expected a whole number"):
        load_config({"LUMI_TIER_FREE_CAP": "x"})


def test_settings_are_read_when_used(monkeypatch, tmp_path):
    monkeypatch.setenv("LUMI_GATEWAY_PORT", "8700")
    assert setting("LUMI_GATEWAY_PORT") == 8700
    monkeypatch.setenv("LUMI_GATEWAY_PORT", "")  # empty: unset
    assert setting("LUMI_GATEWAY_PORT") == 0
    monkeypatch.setenv("LUMI_HOME", str(tmp_path))
    assert setting("LUMI_MODEL_STORE") == str(tmp_path / "models")  # defaults follow the settings they derive from
    assert setting("LUMI_CONFIG") == tmp_path / "config.toml"
    monkeypatch.setenv("LUMI_DEBUG", "1")
    assert setting("LUMI_DEBUG") is True
    assert setting("LUMI_DEBUG", {"LUMI_DEBUG": "off"}) is False
    assert setting("LUMI_QUEUE_CAP", {}, default=7) == 7  # a config.toml value stands in for the default
    assert members("LUMI_PRICE_<DEVICE>", {"LUMI_PRICE_H100": "0.5", "LUMI_PRICE_L4": ""}) == {"H100": 0.5}
    assert lumi_environment({"LUMI_A": "1", "PATH": "/bin"}) == {"LUMI_A": "1"}
    with pytest.raises(KeyError, match="LUMI_NOPE is not a declared setting"):
        setting("LUMI_NOPE")


def test_config_toml_under_the_environment(tmp_path):
    (tmp_path / "config.toml").write_text("[queue]\ncap = 40\ndispatch_limit = 3\n[tiers.free]\ncap = 5\n"
                                          "[prices]\nl4 = 0.25\n")
    env = {"LUMI_HOME": str(tmp_path), "LUMI_QUEUE_CAP": "41", "LUMI_PRICE_H100": "0.5"}
    config = load_config(env)
    assert (config.queue_cap, config.dispatch_limit, config.tiers["free"].cap) == (41, 3, 5)
    assert config.prices["H100"] == 0.5 and config.prices["L4"] == 0.25
    assert config.home == tmp_path and config.max_graph_nodes == SETTINGS["LUMI_MAX_GRAPH_NODES"].default
