"""The layers read downwards (docs/architecture.md): checked on the source, and on what ``import lumi`` loads."""

from __future__ import annotations

import ast
import builtins
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


MAGICS = LUMI.parents[1] / "lumi_magics"
ERRORS = LUMI / "errors.py"
# exceptions from outside that do not say so in their name
EXCEPTION_NAMES = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)} | {
    "Empty", "Full"}  # queue.Empty, queue.Full


def exception_classes(sources: dict[str, str]) -> list[str]:
    """``file:line Name`` of every class deriving from an exception: a built-in one, one whose name says it
    is (``...Error``, ``...Exception``), or a class of ``sources`` that does, however far down."""
    classes = []
    for file, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                classes.append((file, node.lineno, node.name, [ast.unparse(b).split("[")[0].split(".")[-1]
                                                              for b in node.bases]))

    known = set(EXCEPTION_NAMES)

    def derives(bases: list[str]) -> bool:
        return any(b in known or b.endswith(("Error", "Exception")) for b in bases)

    while True:  # through subclasses of subclasses, defined in any order and any file
        more = {name for _, _, name, bases in classes if name not in known and derives(bases)}
        if not more:
            break
        known |= more
    return [f"{file}:{line} {name}" for file, line, name, bases in classes if derives(bases)]


def test_the_exception_scan_follows_bases():
    found = exception_classes({"a.py": "class A(LumiError): pass\nclass Plain: pass\nclass B(lumi.errors.A): pass\n"
                                       "class C(ValueError): pass\nclass D(B, Plain): pass\nclass E(queue.Empty): pass",
                               "errors.py": "class LumiError(Exception): pass"})
    assert found == ["a.py:1 A", "a.py:3 B", "a.py:4 C", "a.py:5 D", "a.py:6 E", "errors.py:1 LumiError"]


def test_every_error_class_lives_in_errors_py():
    paths = [*sorted(LUMI.rglob("*.py")), *sorted(MAGICS.rglob("*.py"))]
    found = exception_classes({str(p.relative_to(LUMI if p.is_relative_to(LUMI) else MAGICS.parent)): p.read_text()
                               for p in paths})
    elsewhere = [f for f in found if not f.startswith("errors.py:")]
    assert not elsewhere, "define these in backend/lumi/errors.py (and import them from there):\n" + "\n".join(
        elsewhere)


def test_the_settings_registry_sits_at_the_bottom():
    assert {n for n in imports(LUMI / "settings.py") if n.startswith("lumi")} <= {"lumi.errors"}
    # above the compiler, settings are read through runtime/config.py (docs/configuration.md)
    below = ("graph/", "compiler/", "errors.py", "settings.py", "runtime/config.py")
    offences = [str(p.relative_to(LUMI)) for p in sorted(LUMI.rglob("*.py"))
                if not str(p.relative_to(LUMI)).startswith(below) and "lumi.settings" in imports(p)]
    for path in sorted(MAGICS.rglob("*.py")):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.ImportFrom) and n.module == "lumi.settings" or isinstance(n, ast.Import)
               and any(a.name == "lumi.settings" for a in n.names) for n in ast.walk(tree)):
            offences.append(str(path.relative_to(MAGICS.parent)))
    assert not offences, "import setting() from lumi.runtime.config here:\n" + "\n".join(offences)
