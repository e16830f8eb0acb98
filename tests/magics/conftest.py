"""Fixtures for the magics' end-to-end tests: real Jupyter kernels."""

from __future__ import annotations

import pytest
from kernelclient import Kernels


@pytest.fixture
def kernels():
    """Start kernels with ``kernels.start(env)``; all are shut down after the test."""
    k = Kernels()
    yield k
    for manager in k.managers:
        manager.shutdown_kernel(now=True)
