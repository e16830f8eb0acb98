"""Lumi as an ``onnx.backend.base.Backend``, so ``onnx.backend.test.BackendTest`` runs on it.

``prepare`` imports the model with :func:`lumi.from_onnx` and compiles it for the ``cpu`` target (device
``"CPU"``). Graph inputs read as shapes or axes (``Reshape``'s shape fed at run time, say) are baked in:
such a model is imported and compiled once per distinct value of them. Element types Lumi does not carry
(int8, uint8, int16, uint16, uint32) are widened at the boundary and the outputs cast back to the
model's declared types.
"""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, helper
from onnx.backend.base import Backend, BackendRep

from ..compiler import Plan
from ..compiler import compile as compile_graph
from .importer import from_onnx, shape_inputs

TARGETS = {"CPU": "cpu"}


class LumiRep(BackendRep):
    """A prepared model: its compiled plan (one per value of its shape inputs) and the ONNX output types."""

    def __init__(self, model: ModelProto, target: str):
        self.model, self.target = model, target
        names = [vi.name for vi in model.graph.input if vi.name not in {i.name for i in model.graph.initializer}]
        static = set(shape_inputs(model))
        self.static = [i for i, name in enumerate(names) if name in static]
        self.names = names
        self.outputs = [np.dtype(helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type))
                        for o in model.graph.output]
        self.plans: dict[tuple, Plan] = {}
        if not self.static:
            self._plan({})

    def _plan(self, constants: dict) -> Plan:
        key = tuple((k, v.tobytes()) for k, v in constants.items())
        if key not in self.plans:
            self.plans[key] = compile_graph(from_onnx(self.model, constants=constants), self.target)
        return self.plans[key]

    def run(self, inputs, **kwargs) -> tuple:
        inputs = [np.asarray(a) for a in inputs]
        plan = self._plan({self.names[i]: inputs[i] for i in self.static})
        dynamic = [a for i, a in enumerate(inputs) if i not in self.static]
        arrays = [a.astype(d, copy=False) for a, (_, _, d) in zip(dynamic, plan.source_graph.input_specs())]
        out = plan(*arrays)
        out = out if isinstance(out, tuple) else (out,)
        return tuple(np.asarray(o).astype(d, copy=False) for o, d in zip(out, self.outputs))


class LumiBackend(Backend):
    """ONNX backend API over Lumi's compiled ``cpu`` target."""

    @classmethod
    def is_compatible(cls, model: ModelProto, device: str = "CPU", **kwargs) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: ModelProto, device: str = "CPU", **kwargs) -> LumiRep:
        super().prepare(model, device, **kwargs)
        return LumiRep(model, TARGETS[device])

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device in TARGETS
