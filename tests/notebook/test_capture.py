"""Cell capture: inputs, outputs and definitions found from the AST."""

from __future__ import annotations

import numpy as np

from lumi_magics.capture import analyze, results_to_namespace, trace_cell


def test_inputs_are_names_read_before_assignment_that_exist():
    ns = {"x": 1, "w": 2, "b": 3, "np": np, "unused": 4}
    info = analyze("y = x * w\nb = 2\nz = b + y + missing\n", ns)
    assert info.inputs == ["x", "w"]  # b is assigned before it is read; missing is not in the namespace
    assert info.outputs == ["y", "b", "z"]


def test_augmented_and_tuple_assignment_bind_outputs():
    info = analyze("a, (b, *c) = x\nx += 1\nd: int = 3\n", {"x": 0})
    assert info.inputs == ["x"]
    assert info.outputs == ["a", "b", "c", "x", "d"]


def test_functions_and_imports_are_definitions_not_inputs():
    src = "import math as m\ndef f(v):\n    k = 2\n    return v * k * scale\ny = f(x)\n"
    info = analyze(src, {"x": 1, "scale": 2, "v": 9, "k": 9})
    assert info.inputs == ["scale", "x"]  # v and k are the function's own names
    assert info.definitions == ["m", "f"]
    assert "def f" in info.definition_source and "import math" in info.definition_source


def test_trace_cell_makes_arrays_inputs_and_scalars_constants(capsys):
    ns = {"np": np, "x": np.ones((2, 3), np.float32), "alpha": 0.5, "name": "run"}
    cell = trace_cell("print(x.shape)\ny = x * alpha\nlabel = name.upper()\npair = (y, y + 1)\n", ns)
    assert capsys.readouterr().out.strip() == "(2, 3)"
    assert [n for n, *_ in cell.graph.input_specs()] == ["x"]
    assert cell.local_values == {"label": "RUN"}
    values = results_to_namespace(cell, cell.graph.run(*cell.arrays, backend="numpy"))
    np.testing.assert_array_equal(values["y"], np.full((2, 3), 0.5, np.float32))
    assert isinstance(values["pair"], tuple)
    np.testing.assert_array_equal(values["pair"][1], np.full((2, 3), 1.5, np.float32))
