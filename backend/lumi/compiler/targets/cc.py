"""Compiling generated C with the system compiler, cached on disk, called through ctypes.

Flags: ``-O3 -march=native`` and OpenMP for vectorising and threading; ``-fno-math-errno
-fno-trapping-math`` (not ``-ffast-math``) so loops over ``expf``/``tanhf`` vectorise into
glibc's libmvec while NaN and inf keep their IEEE meaning. The toolchain is probed once: without
libmvec the vector declarations are left out, without OpenMP threading falls back to ``-fopenmp-simd``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ...errors import ExecutionError
from ...settings import setting

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
    d = setting("LUMI_HOME") / "kernels"
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
        # Every name this process writes is its own: workers on one machine build the same kernel at
        # once, and a compiler reading a source another process is rewriting builds a library
        # without the kernel in it. Finished files are renamed into place, which is atomic.
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        c_tmp, so_tmp = tmp.with_suffix(".tmp.c"), tmp.with_suffix(".tmp.so")
        c_tmp.write_text(src)
        procs.append((subprocess.Popen([tc.cc, *tc.flags, str(c_tmp), "-o", str(so_tmp), *tc.libs],
                                       stderr=subprocess.PIPE, text=True), c_tmp, so_tmp, path))
    for proc, c_tmp, so_tmp, path in procs:
        _, err = proc.communicate()
        os.replace(c_tmp, path.with_suffix(".c"))  # kept beside the library, for reading
        if proc.returncode != 0:
            raise ExecutionError(f"the C compiler rejected a generated kernel ({path.with_suffix('.c')}):\n{err}")
        os.replace(so_tmp, path)
    return paths


_PLACEHOLDER = "LUMI_KERNEL_SYMBOL"


def build_kernels(kernels: list[tuple[str, str]]) -> dict[str, tuple[Path, str]]:
    """Build named kernel sources; returns each name's ``(library, symbol)``.

    Kernels that differ only in their names (a repeated layer, a long chain split by the group cap)
    are compiled once, under a symbol named by the hash of their source. The distinct ones are bundled
    into at most one translation unit per core, so a plan of hundreds of kernels costs a few compiler
    runs instead of hundreds.
    """
    from ..render_c import bundle

    unique: dict[str, str] = {}
    symbol_of: dict[str, str] = {}
    for name, source in kernels:
        canonical = re.sub(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", _PLACEHOLDER, source)
        symbol = "k_" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
        unique.setdefault(symbol, canonical.replace(_PLACEHOLDER, symbol))
        symbol_of[name] = symbol
    symbols = sorted(unique)
    n = max(1, min(os.cpu_count() or 1, len(symbols) // 4))
    chunks = [symbols[i::n] for i in range(n)]
    paths = build([bundle([unique[s] for s in chunk]) for chunk in chunks])
    library = {s: path for chunk, path in zip(chunks, paths) for s in chunk}
    return {name: (library[symbol], symbol) for name, symbol in symbol_of.items()}


def load(path: Path, name: str, pointers: int = 2):
    """The kernel function ``name`` from a built library, taking ``pointers`` pointer arguments: a
    group kernel is ``fn(buffer_ptrs, symbol_values)``, a matmul kernel adds its ``lumi_matmul`` operands."""
    fn = getattr(ctypes.CDLL(str(path)), name)
    fn.argtypes = [ctypes.c_void_p] * pointers
    fn.restype = None
    return fn


class Gemm(NamedTuple):
    address: int  # of the CBLAS ?gemm function
    ilp64: bool  # 64-bit integer arguments


@functools.cache
def blas_gemm(dtype: str) -> Gemm | None:
    """A CBLAS gemm for ``dtype`` from an OpenBLAS already loaded (NumPy's ILP64 build first), or None
    where no OpenBLAS names its integer width in its symbols (fused matmuls then call ``np.matmul``)."""
    from threadpoolctl import threadpool_info

    p = {"float32": "s", "float64": "d"}[dtype]
    libs = [ctypes.CDLL(i["filepath"]) for i in threadpool_info()
            if i["user_api"] == "blas" and i["internal_api"] == "openblas"]
    for name, ilp64 in ((f"scipy_cblas_{p}gemm64_", True), (f"cblas_{p}gemm64_", True),
                        (f"scipy_cblas_{p}gemm", False), (f"cblas_{p}gemm", False)):
        for lib in libs:
            fn = getattr(lib, name, None)
            if fn is not None:
                return Gemm(ctypes.cast(fn, ctypes.c_void_p).value, ilp64)
    return None


class _OneBlasThread:
    """Holds every loaded BLAS at one thread while fused matmuls run. Each OpenMP thread calls BLAS on
    its own rows, so a multi-threaded BLAS would oversubscribe the cores; and setting the thread count
    also stops the workers OpenBLAS leaves spinning for a while after NumPy's last call (measured: they
    cost the MLP block about 1.5 ms per call). Nested and concurrent holders share one setting; the
    last one restores it."""

    def __init__(self):
        from threadpoolctl import ThreadpoolController

        self._libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        self._lock = threading.Lock()
        self._holders = 0
        self._saved: list[int] = []

    def __enter__(self):
        with self._lock:
            if self._holders == 0:
                self._saved = [c.num_threads for c in self._libs]
                for c in self._libs:
                    c.set_num_threads(1)
            self._holders += 1

    def __exit__(self, *exc):
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                for c, n in zip(self._libs, self._saved):
                    c.set_num_threads(n)


@functools.cache
def one_blas_thread() -> _OneBlasThread:
    return _OneBlasThread()
