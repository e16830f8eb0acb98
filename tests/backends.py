"""Stopping a test's local Lumi backend and removing what it left (used by conftest and the notebook tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def stop_backend(home: str | os.PathLike) -> None:
    """Stop the local backend recorded under ``home`` (if any) and remove its files and Ray's."""
    subprocess.run([sys.executable, "-m", "lumi.cli", "stop"], env={**os.environ, "LUMI_HOME": str(home)},
                   capture_output=True, timeout=120)
    from lumi.runtime import head

    temp = head.ray_temp_dir_for(home)
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(temp, ignore_errors=True)
