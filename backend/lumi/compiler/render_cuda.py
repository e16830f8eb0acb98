"""The group IR as CUDA C++: elementwise groups as grid-stride loops, reduce groups as one block per row.

Each source is a complete translation unit (``nvcc --ptx`` compiles it; CuPy's NVRTC loads it).
float16 is stored as ``__half`` and computed in float. Symbolic dimensions are ``long long`` arguments
after the buffers.
"""

from __future__ import annotations

from .cstyle import Body, Dialect, dim, index_expr, kernel_body, reduce_init, unravel
from .groups import Group, has_gather
from .views import sprod

CUDA = Dialect(
    storage={"float16": "__half", "float32": "float", "float64": "double", "int32": "int",
             "int64": "long long", "bool": "unsigned char"},
    compute={"float16": "float", "float32": "float", "float64": "double", "int32": "int",
             "int64": "long long", "bool": "unsigned char"},
    index="long long",
    inf={"float16": "__int_as_float(0x7f800000)", "float32": "__int_as_float(0x7f800000)",
         "float64": "__longlong_as_double(0x7ff0000000000000LL)"},
    nan={"float16": "__int_as_float(0x7fffffff)", "float32": "__int_as_float(0x7fffffff)",
         "float64": "__longlong_as_double(0x7ff8000000000000LL)"},
    load_half="__half2float({x})",
    store_half="__float2half({x})",
    round_half="__half2float(__float2half({x}))",
)

BLOCK = 256

PRELUDE = """#include <cuda_fp16.h>
__device__ __forceinline__ long long lumi_index(long long i, long long n, long long *err, long long where) {
  const long long j = i < 0 ? i + n : i;
  if ((unsigned long long)j < (unsigned long long)n) return j;
  err[0] = 1; err[1] = i; err[2] = where;
  return 0;
}
__device__ __forceinline__ long long lumi_ipow(long long b, long long e) {
  long long r = 1;
  for (; e > 0; e >>= 1, b *= b) if (e & 1) r *= b;
  return r;
}
struct LumiSum { template <typename T> __device__ static T f(T a, T b) { return a + b; } };
struct LumiMax { template <typename T> __device__ static T f(T a, T b) { return (a > b || a != a) ? a : b; } };
template <typename Op, typename T>
__device__ T lumi_block_reduce(T v, unsigned long long *raw) {
  T *sh = reinterpret_cast<T *>(raw);
  for (int d = 16; d > 0; d >>= 1) v = Op::f(v, __shfl_xor_sync(0xffffffffu, v, d));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  v = sh[0];
  for (int w = 1; w < nw; w++) v = Op::f(v, sh[w]);
  return v;
}
"""



def render(group: Group) -> str:
    """A complete CUDA C++ translation unit with one ``extern "C" __global__`` kernel named after the group."""
    reads, writes, body = kernel_body(group, CUDA)
    params = []
    for k, b in enumerate(reads):
        dtype = next(ld.dtype for ld in group.loads if ld.buf == b)
        params.append(f"const {CUDA.storage[dtype]} *__restrict__ in{k}")
    params += [f"{CUDA.storage[st.dtype]} *__restrict__ out{k}" for k, st in enumerate(group.stores)]
    params += ["long long *lumi_err"] if has_gather(group) else []
    params += [f"const long long S_{s}" for s in group.symbols]
    lines = [f'extern "C" __global__ void __launch_bounds__({BLOCK}) {group.name}({", ".join(params)}) {{',
             f"  const long long n_outer = {dim(sprod(group.outer))}, n_inner = {dim(sprod(group.inner))};"]
    lines += _elementwise(group, body) if group.kind == "elementwise" else _reduce(group, body)
    lines.append("}")
    return PRELUDE + "\n".join(lines) + "\n"


def _stores(group: Group, body: Body, level: str) -> list[str]:
    idx_inner = body.inner_idx if level == "full" else ["0"] * len(body.inner_idx)
    return [f"out{k}[{index_expr(st.access, body.outer_idx + idx_inner)}] = "
            f"{CUDA.store(f'v{body.n(st.node)}', st.dtype)};"
            for k, st in enumerate(group.stores) if st.level == level]


def _elementwise(group: Group, body: Body) -> list[str]:
    inner = unravel("o", list(group.outer), body.outer_idx, "long long")
    inner += unravel("r", list(group.inner), body.inner_idx, "long long")
    inner += body.cone([("stmt", st.node) for st in group.stores], set()) + _stores(group, body, "full")
    return [
        "  const long long total = n_outer * n_inner;",
        "  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;"
        " i += (long long)gridDim.x * blockDim.x) {",
        "    const long long o = i / n_inner, r = i - o * n_inner;",
        *("    " + x for x in inner),
        "  }",
    ]


def _reduce(group: Group, body: Body) -> list[str]:
    have: set = set()
    row = [*unravel("o", list(group.outer), body.outer_idx, "long long"), *body.row_ready(have)]
    for s in body.reduces():
        src, t = s.args[0], body.acc_type(s.dtype)
        acc, v, op = f"acc{body.n(s.node)}", body.arg(src), "LumiSum" if s.op == "sum" else "LumiMax"
        row.append(f"{t} {acc} = {reduce_init(s.op, s.dtype, CUDA)};")
        row.append("for (long long r = threadIdx.x; r < n_inner; r += blockDim.x) {")
        loop = unravel("r", list(group.inner), body.inner_idx, "long long") + body.cone([src], set())
        loop.append(f"{acc} = {op}::f<{t}>({acc}, ({t}){v});")
        row += ["  " + x for x in loop]
        row.append("}")
        total = body.reduced(s, f"lumi_block_reduce<{op}, {t}>({acc}, lumi_sh)")
        row.append(f"const {body.ctype(s.dtype)} v{body.n(s.node)} = {total};")
        have.add(("stmt", s.node))
        row += body.row_ready(have)
    full = [st for st in group.stores if st.level == "full"]
    if full:
        row.append("for (long long r = threadIdx.x; r < n_inner; r += blockDim.x) {")
        loop = unravel("r", list(group.inner), body.inner_idx, "long long")
        loop += body.cone([("stmt", st.node) for st in full], set()) + _stores(group, body, "full")
        row += ["  " + x for x in loop]
        row.append("}")
    row_stores = _stores(group, body, "row")
    if row_stores:
        row += ["if (threadIdx.x == 0) {", *("  " + x for x in row_stores), "}"]
    return [
        "  __shared__ unsigned long long lumi_sh[32];",
        "  for (long long o = blockIdx.x; o < n_outer; o += gridDim.x) {",
        *("    " + x for x in row),
        "    __syncthreads();",
        "  }",
    ]
