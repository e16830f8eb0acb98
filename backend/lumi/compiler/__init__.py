"""The compiler: optimisation passes, fusion into kernels, C and CUDA renderers, runnable plans."""

from .plan import TARGETS, Kernel, Plan, best_target, check_budget, compile

__all__ = ["TARGETS", "Kernel", "Plan", "best_target", "check_budget", "compile"]
