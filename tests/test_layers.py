"""The layers read downwards (docs/architecture.md): checked on the source, and on what ``import lumi`` loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LUMI = Path(__file__).resolve().parents[1] / "backend" / "lumi"
# what each layer may not import, by module name prefix (relative imports resolved against lumi.<layer>)
FORBIDDEN = {
    "graph": ("lumi.compiler", "lumi.runtime", "lumi.serving", "lumi.nn", "lumi_magics", "ray", "fastapi", "httpx",
              "IPython", "ipywidgets"),
    "compiler": ("lumi.runtime", "lumi.serving", "lumi_magics", "ray", "fastapi", "httpx", "IPython", "ipywidgets"),
}


def imports(path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports, wherever in the file."""
    package = "lumi." + ".".join(path.relative_to(LUMI).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rstrip(".").split(".")
                base = base[: len(base) - node.level + 1]
                names.append(".".join(base + ([node.module] if node.module else [])))
            else:
                names.append(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer):
    offences = [f"{path.relative_to(LUMI)} imports {name}" for path in sorted((LUMI / layer).rglob("*.py"))
                for name in imports(path) if name.startswith(FORBIDDEN[layer])]
    assert not offences, "\n".join(offences)


def test_the_checker_sees_relative_imports():
    assert "lumi.compiler.groups" in imports(LUMI / "compiler" / "plan.py")
    assert "lumi.graph.ir" in imports(LUMI / "compiler" / "targets" / "cpu.py")


def test_import_lumi_loads_neither_ray_nor_http_nor_storage():
    code = ("import sys, lumi; heavy = [m for m in ('ray', 'httpx', 'fsspec', 'fastapi', 'IPython') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import lumi loaded {out}"
