"""The compiler: optimisation passes, fusion into kernels, C and CUDA renderers, runnable plans."""

from ..graph.ir import register_compiled_runner
from .plan import TARGETS, Kernel, Plan, best_target, check_budget, compile, is_compiled, run_compiled

register_compiled_runner(run_compiled)

__all__ = ["TARGETS", "Kernel", "Plan", "best_target", "check_budget", "compile", "is_compiled"]
