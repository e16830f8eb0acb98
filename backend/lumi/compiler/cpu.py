"""Compiling generated C with the system compiler, cached on disk, called through ctypes.

Flags: ``-O3 -march=native`` and OpenMP for vectorising and threading; ``-fno-math-errno
-fno-trapping-math`` (not ``-ffast-math``) so loops over ``expf``/``tanhf`` vectorise into
glibc's libmvec while NaN and inf keep their IEEE meaning. The toolchain is probed once: without
libmvec the vector declarations are left out, without OpenMP threading falls back to ``-fopenmp-simd``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExecutionError

# Idle OpenMP threads sleep instead of spinning, so they do not steal the cores BLAS runs on next.
# libgomp reads this when it is first loaded (by the toolchain probe or a kernel); a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_BASE_FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math", "-std=gnu11")
_PROBE = """#include <math.h>
#include <stdint.h>
#pragma omp declare simd notinbranch
extern float tanhf(float);
void probe(float *x, int64_t n) {
  #pragma omp parallel for simd
  for (int64_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
}
"""


@dataclass(frozen=True)
class Toolchain:
    cc: str
    flags: tuple[str, ...]
    libs: tuple[str, ...]
    version: str


def _try(cc: str, flags, libs) -> bool:
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d, "probe.c"), Path(d, "probe.so")
        src.write_text(_PROBE)
        r = subprocess.run([cc, *flags, str(src), "-o", str(out), *libs], capture_output=True)
        if r.returncode != 0:
            return False
        try:
            ctypes.CDLL(str(out))
        except OSError:
            return False
        return True


@functools.cache
def toolchain() -> Toolchain | None:
    """The C compiler and flags this machine supports, or None where there is no C compiler."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None
    for extra, libs in ((("-fopenmp", "-DLUMI_MVEC"), ("-lmvec", "-lm")), (("-fopenmp",), ("-lm",)),
                        (("-fopenmp-simd",), ("-lm",))):
        flags = (*_BASE_FLAGS, *extra)
        if _try(cc, flags, libs):
            return Toolchain(cc, flags, libs, version)
    return None


def kernel_dir() -> Path:
    home = Path(os.environ.get("LUMI_HOME") or Path.home() / ".lumi")
    d = home / "kernels"
    try:
        d.mkdir(parents=True, exist_ok=True)
        return d
    except OSError:
        d = Path(tempfile.gettempdir()) / "lumi-kernels"
        d.mkdir(parents=True, exist_ok=True)
        return d


def build(sources: list[str]) -> list[Path]:
    """Shared libraries for these C sources, compiled in parallel where not already cached."""
    tc = toolchain()
    if tc is None:
        raise ExecutionError("no working C compiler found; compile with target='numpy' instead")
    d = kernel_dir()
    paths, todo = [], []
    for src in sources:
        key = hashlib.sha256("\0".join([src, tc.version, *tc.flags, *tc.libs]).encode()).hexdigest()[:32]
        path = d / f"{key}.so"
        paths.append(path)
        if not path.exists():
            todo.append((src, path))
    procs = []
    for src, path in todo:
        c_path = path.with_suffix(".c")
        c_path.write_text(src)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.so")
        procs.append((subprocess.Popen([tc.cc, *tc.flags, str(c_path), "-o", str(tmp), *tc.libs],
                                       stderr=subprocess.PIPE, text=True), tmp, path))
    for proc, tmp, path in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise ExecutionError(f"the C compiler rejected a generated kernel ({path.with_suffix('.c')}):\n{err}")
        os.replace(tmp, path)
    return paths


def load(path: Path, name: str):
    """The kernel function ``name`` from a built library: call it as ``fn(buffer_ptrs, symbol_values)``."""
    fn = getattr(ctypes.CDLL(str(path)), name)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    fn.restype = None
    return fn


class _SharedBlas:
    """NumPy's BLAS run single-threaded from our own threads while a plan runs.

    OpenBLAS's worker threads busy-wait for a while after every call, so a fused kernel that follows
    a matmul would share its cores with spinning threads (measured: the MLP block's GELU epilogue ran
    no faster on two threads than on one). During a plan, BLAS is set to one thread and a matmul's
    rows are split over this pool instead; nothing spins between steps.
    """

    def __init__(self):
        from threadpoolctl import ThreadpoolController

        self.libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        self.threads = os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="lumi-blas")
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: list[int] = []

    @contextlib.contextmanager
    def session(self):
        with self._lock:
            if self._depth == 0:
                self._saved = [c.num_threads for c in self.libs]
                for c in self.libs:
                    c.set_num_threads(1)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    for c, n in zip(self.libs, self._saved):
                        c.set_num_threads(n)

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]),
                       dtype=np.result_type(a, b))
        rows = a.shape[-2]
        if rows < 2 * self.threads or rows * a.shape[-1] * b.shape[-1] < (1 << 21):
            return np.matmul(a, b, out=out)
        step = -(-rows // self.threads)
        parts = [slice(lo, lo + step) for lo in range(0, rows, step)]
        list(self.pool.map(lambda s: np.matmul(a[..., s, :], b, out=out[..., s, :]), parts))
        return out


@functools.cache
def shared_blas() -> _SharedBlas:
    return _SharedBlas()
