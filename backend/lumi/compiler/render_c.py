"""The group IR as C: one function per group, OpenMP across rows, ``omp simd`` inside.

The math functions are declared ``omp declare simd`` (when ``LUMI_MVEC`` is defined, i.e. the
C library has them) so GCC calls glibc's vector ``expf``/``tanhf`` (libmvec) without
``-ffast-math``: NaN and inf keep NumPy's meaning.
"""

from __future__ import annotations

from .cstyle import Body, Dialect, dim, index_expr, inner_is_zero, kernel_body, reduce_init, unravel
from .groups import Group, MatmulStep, has_gather
from .views import sprod

C = Dialect(
    storage={"float16": "_Float16", "float32": "float", "float64": "double", "int32": "int32_t",
             "int64": "int64_t", "bool": "uint8_t"},
    compute={"float16": "float", "float32": "float", "float64": "double", "int32": "int32_t",
             "int64": "int64_t", "bool": "uint8_t"},
    index="int64_t",
    inf={"float16": "INFINITY", "float32": "INFINITY", "float64": "((double)INFINITY)"},
    nan={"float16": "NAN", "float32": "NAN", "float64": "((double)NAN)"},
    load_half="((float){x})",
    store_half="((_Float16)({x}))",
    round_half="((float)(_Float16){x})",
    exp_prefix="lumi_",
)

_VECTOR_MATH = ("exp", "log", "sin", "tanh", "erf")

# libmvec's vector exp leaves its fast path for every lane whose result underflows, and masked scores
# (-inf before a softmax) are exactly such lanes: 10-30x slower per vector. Inputs below the
# threshold (result +0) call exp(+0) instead and are multiplied by 0; every result is unchanged, NaN
# included. A plain `x < lo ? lo : x` does not work: GCC turns exp of that select back into a call on
# the raw x. The bit mask hides the select from it.
_EXP_HELPERS = "\n".join(
    f"""#pragma omp declare simd notinbranch
static inline {t} lumi_exp{s}({t} x) {{
  {u} bits, keep = -({u})!(x < {lo});
  memcpy(&bits, &x, sizeof bits);
  bits &= keep;
  {t} a;
  memcpy(&a, &bits, sizeof a);
  return exp{s}(a) * ({t})(keep & 1u);
}}""" for t, s, u, lo in (("float", "f", "uint32_t", "-104.0f"), ("double", "", "uint64_t", "-746.0")))

PRELUDE = "\n".join(
    ["#include <math.h>", "#include <stdint.h>", "#include <string.h>", "#ifdef LUMI_MVEC"]
    + [f"#pragma omp declare simd notinbranch\nextern {t} {f}{s}({t});"
       for f in _VECTOR_MATH for t, s in (("float", "f"), ("double", ""))]
    + ["#pragma omp declare simd notinbranch\nextern float powf(float, float);",
       "#pragma omp declare simd notinbranch\nextern double pow(double, double);",
       "#endif",
       _EXP_HELPERS,
       "typedef struct {  /* a fused matmul's operands: see render_matmul */",
       "  void *gemm; void *a; void *b; void *c;",
       "  int64_t ilp64, trans_a, trans_b, m, n, k, lda, ldb;",
       "} lumi_matmul;",
       "static inline int64_t lumi_index(int64_t i, int64_t n, int64_t *err, int64_t where) {",
       "  const int64_t j = i < 0 ? i + n : i;",
       "  if ((uint64_t)j < (uint64_t)n) return j;",
       "  err[0] = 1; err[1] = i; err[2] = where;",
       "  return 0;",
       "}",
       "static inline int64_t lumi_ipow(int64_t b, int64_t e) {",
       "  int64_t r = 1;",
       "  for (; e > 0; e >>= 1, b *= b) if (e & 1) r *= b;",
       "  return r;",
       "}", ""]
)

CHUNK = 2048  # inner elements per parallel work item in elementwise kernels
SERIAL_BELOW = 1 << 15  # smaller domains run on the calling thread: waking the team costs more
# guided scheduling: a thread the OS preempts holds up only its current chunk, not a static share
PARALLEL = f"  #pragma omp parallel for schedule(guided) if(n_outer * n_inner >= {SERIAL_BELOW})"



def render(group: Group) -> str:
    """A complete C translation unit defining ``void <name>(char **bufs, const int64_t *syms)``."""
    body, lines = _header(group, f"void {group.name}(char **bufs, const int64_t *syms) {{")
    if group.kind == "elementwise":
        lines += _elementwise(group, body)
    else:
        lines += _reduce_columns(group, body) if _column_reduction(group) else _reduce(group, body)
    lines.append("}")
    return PRELUDE + "\n".join(lines) + "\n"


def render_matmul(step: MatmulStep, dtype: str) -> str:
    """A C translation unit defining ``void <name>(char **bufs, const int64_t *syms, const lumi_matmul *mm)``:
    the matmul's rows split over the OpenMP threads, each thread calling BLAS (``mm->gemm``, a CBLAS gemm;
    the caller holds the BLAS library at one thread) on its rows of ``a @ b`` into ``c``, then the epilogue
    on them. With ``gemm`` NULL the product is already in ``c`` and only the epilogue runs.
    ``lumi_matmul`` is in :data:`PRELUDE`; ``targets.cpu.MatmulArgs`` mirrors it.
    """
    group, t = step.epilogue, C.storage[dtype]
    gemm = "(int, int, int, {i}, {i}, {i}, {t}, const {t} *, {i}, const {t} *, {i}, {t}, {t} *, {i})"
    lines, call = [], ""
    if group is not None:
        body, lines = _header(group, f"static void {step.name}_rows(char **bufs, const int64_t *syms, "
                                     "int64_t o_lo, int64_t o_hi, int64_t r_lo, int64_t r_hi) {")
        if group.kind == "elementwise":
            lines += ["  (void)n_outer;", "  for (int64_t o = o_lo; o < o_hi; o++) {",
                      *("    " + x for x in _elementwise_row(group, body)), "  }", "}"]
        else:
            lines += ["  (void)r_lo; (void)r_hi;", "  for (int64_t o = o_lo; o < o_hi; o++) {",
                      *("    " + x for x in _reduce_row(group, body)), "  }", "}"]
        flat = group.kind == "elementwise" and not group.outer
        call = f"    if (hi > lo) {step.name}_rows(bufs, syms, {'0, 1, lo * N, hi * N' if flat else 'lo, hi, 0, N'});"
    lines += [
        f"typedef void (*gemm32_{t}){gemm.format(i='int32_t', t=t)};",
        f"typedef void (*gemm64_{t}){gemm.format(i='int64_t', t=t)};",
        f"void {step.name}(char **bufs, const int64_t *syms, const lumi_matmul *mm) {{",
        *([] if call else ["  (void)bufs; (void)syms;"]),
        f"  const {t} *A = mm->a, *B = mm->b;",
        f"  {t} *Cm = mm->c;",
        "  const int64_t ta = mm->trans_a, tb = mm->trans_b, M = mm->m, N = mm->n, K = mm->k;",
        "  const int64_t lda = mm->lda, ldb = mm->ldb;",
        f"  #pragma omp parallel if(M * N * (K + 1) >= {SERIAL_BELOW * 8})",
        "  {",
        "#ifdef _OPENMP",
        "    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();",
        "#else",
        "    const int64_t t = 0, nt = 1;",
        "#endif",
        "    const int64_t lo = M * t / nt, hi = M * (t + 1) / nt;",
        f"    const {t} *a = A + (ta ? lo : lo * lda);",
        "    if (hi > lo && mm->gemm && mm->ilp64) {",
        f"      ((gemm64_{t})mm->gemm)(101, ta ? 112 : 111, tb ? 112 : 111, hi - lo, N, K, 1, a, lda, B, ldb, 0,",
        "                      Cm + lo * N, N);",
        "    } else if (hi > lo && mm->gemm) {",
        f"      ((gemm32_{t})mm->gemm)(101, ta ? 112 : 111, tb ? 112 : 111, (int32_t)(hi - lo), (int32_t)N,",
        "                      (int32_t)K, 1, a, (int32_t)lda, B, (int32_t)ldb, 0, Cm + lo * N, (int32_t)N);",
        "    }",
        *([call] if call else []),
        "  }",
        "}",
    ]
    return PRELUDE + "#ifdef _OPENMP\n#include <omp.h>\n#endif\n" + "\n".join(lines) + "\n"


def bundle(sources: list[str]) -> str:
    """One translation unit holding several kernels' sources (each as :func:`render` or
    :func:`render_matmul` made it): the compiler starts and reads the prelude once for all of them."""
    return PRELUDE + "\n".join(s.removeprefix(PRELUDE) for s in sources)


def _header(group: Group, signature: str) -> tuple[Body, list[str]]:
    """The Body for ``group`` and a function's opening lines: typed buffer pointers, symbols, extents."""
    reads, writes, body = kernel_body(group, C)
    lines = [signature]
    for k, b in enumerate(reads):
        dtype = next(ld.dtype for ld in group.loads if ld.buf == b)
        lines.append(f"  const {C.storage[dtype]} *restrict in{k} = (const {C.storage[dtype]} *)bufs[{k}];")
    for k, st in enumerate(group.stores):
        lines.append(f"  {C.storage[st.dtype]} *restrict out{k} = ({C.storage[st.dtype]} *)bufs[{len(reads) + k}];")
    if has_gather(group):
        lines.append(f"  int64_t *lumi_err = (int64_t *)bufs[{len(reads) + len(group.stores)}];")
    for k, s in enumerate(group.symbols):
        lines.append(f"  const int64_t S_{s} = syms[{k}];")
    lines.append(f"  const int64_t n_outer = {dim(sprod(group.outer))}, n_inner = {dim(sprod(group.inner))};")
    return body, lines


def _row_setup(group: Group, body: Body, flat: str) -> list[str]:
    lines = unravel(flat, list(group.outer), body.outer_idx, "int64_t")
    return lines


def _inner_setup(group: Group, body: Body) -> list[str]:
    return unravel("r", list(group.inner), body.inner_idx, "int64_t")


def _store_lines(group: Group, body: Body, level: str) -> list[str]:
    lines = []
    for k, st in enumerate(group.stores):
        if st.level != level:
            continue
        idx = body.outer_idx + (body.inner_idx if level == "full" else ["0"] * len(body.inner_idx))
        lines.append(f"out{k}[{index_expr(st.access, idx)}] = {C.store(f'v{body.n(st.node)}', st.dtype)};")
    return lines


def _elementwise(group: Group, body: Body) -> list[str]:
    return [
        f"  const int64_t n_chunks = (n_inner + {CHUNK} - 1) / {CHUNK};",
        PARALLEL,
        "  for (int64_t p = 0; p < n_outer * n_chunks; p++) {",
        "    const int64_t o = p / n_chunks, r_lo = (p % n_chunks) * " + str(CHUNK) + ";",
        f"    const int64_t r_hi = r_lo + {CHUNK} < n_inner ? r_lo + {CHUNK} : n_inner;",
        *("    " + x for x in _elementwise_row(group, body)),
        "  }",
    ]


def _elementwise_row(group: Group, body: Body) -> list[str]:
    """Outer index ``o``, inner indices ``r_lo`` to ``r_hi``."""
    n_out = len(group.outer)
    targets = [("stmt", st.node) for st in group.stores]
    hoisted = [i for i, ld in enumerate(group.loads) if ld.buf is not None and inner_is_zero(ld.access, n_out)]
    inner_lines = _inner_setup(group, body) + body.cone(targets, {("load", i) for i in hoisted})
    inner_lines += _store_lines(group, body, "full")
    return [
        *_row_setup(group, body, "o"),
        *(body.load_line(i, group.loads[i], row_context=True) for i in hoisted),
        "#pragma omp simd",
        "for (int64_t r = r_lo; r < r_hi; r++) {",
        *("  " + x for x in inner_lines),
        "}",
    ]


def _reduce(group: Group, body: Body) -> list[str]:
    row = ["    " + x for x in _reduce_row(group, body)]
    return [PARALLEL, "  for (int64_t o = 0; o < n_outer; o++) {", *row, "  }"]


def _reduce_row(group: Group, body: Body) -> list[str]:
    """Everything one output row ``o`` needs: its reductions, then its stores."""
    have: set = set()
    row = [*_row_setup(group, body, "o"), *body.row_ready(have)]
    for s in body.reduces():
        src = s.args[0]
        t = body.acc_type(s.dtype)
        acc, v = f"acc{body.n(s.node)}", body.arg(src)
        floating = s.dtype in ("float16", "float32", "float64")
        row.append(f"{t} {acc} = {reduce_init(s.op, s.dtype, C)};")
        if s.op == "sum":
            clause, combine = f"reduction(+:{acc})", f"{acc} += {v};"
        else:
            clause, combine = f"reduction(max:{acc})", f"{acc} = {v} > {acc} ? {v} : {acc};"
            if floating:
                row.append(f"int nan{body.n(s.node)} = 0;")
                clause += f" reduction(|:nan{body.n(s.node)})"
                combine += f" nan{body.n(s.node)} |= {v} != {v};"
        row.append(f"#pragma omp simd {clause}")
        row.append("for (int64_t r = 0; r < n_inner; r++) {")
        row += ["  " + x for x in _inner_setup(group, body) + body.cone([src], set()) + [combine]]
        row.append("}")
        if s.op == "max" and floating:
            row.append(f"if (nan{body.n(s.node)}) {acc} = {C.nan[s.dtype]};")
        row.append(f"const {body.ctype(s.dtype)} v{body.n(s.node)} = {body.reduced(s, acc)};")
        have.add(("stmt", s.node))
        row += body.row_ready(have)
    full = [st for st in group.stores if st.level == "full"]
    if full:
        row += ["#pragma omp simd", "for (int64_t r = 0; r < n_inner; r++) {"]
        row += ["  " + x for x in _inner_setup(group, body) + body.cone([("stmt", st.node) for st in full], set())]
        row += ["  " + x for x in _store_lines(group, body, "full")]
        row.append("}")
    row += _store_lines(group, body, "row")
    return row


COLUMNS = 64  # columns per work item when reducing along a non-contiguous axis


def _column_reduction(group: Group) -> bool:
    """Reductions whose reduced axes are strided while the last kept axis is contiguous (``x.sum(0)``):
    better walked row by row over a block of columns than column by column."""
    n = len(group.outer)
    if n == 0 or not group.inner:
        return False
    tops = [ld.access[-1].strides for ld in group.loads if ld.access is not None and ld.level == "full"]
    return any(t[n - 1] == 1 for t in tops) and not any(1 in t[n:] for t in tops)


def _reduce_columns(group: Group, body: Body) -> list[str]:
    """Each work item owns a block of columns; row values are arrays over the block, ``omp simd`` across it."""
    n = len(group.outer)
    col = body.outer_idx[n - 1]
    body.row_suffix = "[j]"
    head = [f"const int64_t {col} = c0 + j;"]

    def over_block(lines: list[str]) -> list[str]:
        return ["#pragma omp simd", "for (int64_t j = 0; j < cn; j++) {", *("  " + x for x in head + lines), "}"]

    lines = [
        f"  const int64_t n_cols = {dim(group.outer[-1])}, n_rest = n_cols ? n_outer / n_cols : 0;",
        f"  const int64_t n_cb = (n_cols + {COLUMNS} - 1) / {COLUMNS};",
        PARALLEL,
        "  for (int64_t p = 0; p < n_rest * n_cb; p++) {",
    ]
    row = ["const int64_t orest = p / n_cb, c0 = (p % n_cb) * " + str(COLUMNS) + ";",
           f"const int64_t cn = n_cols - c0 < {COLUMNS} ? n_cols - c0 : {COLUMNS};",
           *unravel("orest", list(group.outer[:-1]), body.outer_idx[:-1], "int64_t")]
    row += [f"{body.ctype(s.dtype)} v{body.n(s.node)}[{COLUMNS}];" for s in group.stmts if s.level == "row"]
    have: set = set()
    row += over_block(body.row_ready(have))
    for s in body.reduces():
        src, t = s.args[0], body.acc_type(s.dtype)
        acc, v = f"acc{body.n(s.node)}", body.arg(src)
        floating = s.dtype in ("float16", "float32", "float64")
        row.append(f"{t} {acc}[{COLUMNS}];")
        init = [f"{acc}[j] = {reduce_init(s.op, s.dtype, C)};"]
        if s.op == "sum":
            combine = f"{acc}[j] += {v};"
        else:
            combine = f"{acc}[j] = {v} > {acc}[j] ? {v} : {acc}[j];"
            if floating:
                row.append(f"int nan{body.n(s.node)}[{COLUMNS}];")
                init.append(f"nan{body.n(s.node)}[j] = 0;")
                combine += f" nan{body.n(s.node)}[j] |= {v} != {v};"
        row += over_block(init)
        row.append("for (int64_t r = 0; r < n_inner; r++) {")
        row += ["  " + x for x in _inner_setup(group, body)]
        row += ["  " + x for x in over_block(body.cone([src], set()) + [combine])]
        row.append("}")
        fin = [f"v{body.n(s.node)}[j] = {body.reduced(s, f'{acc}[j]')};"]
        if s.op == "max" and floating:
            fin = [f"v{body.n(s.node)}[j] = nan{body.n(s.node)}[j] ? {C.nan[s.dtype]} : {acc}[j];"]
        have.add(("stmt", s.node))
        row += over_block(fin + body.row_ready(have))
    full = [st for st in group.stores if st.level == "full"]
    if full:
        row.append("for (int64_t r = 0; r < n_inner; r++) {")
        row += ["  " + x for x in _inner_setup(group, body)]
        cone = body.cone([("stmt", st.node) for st in full], set())
        row += ["  " + x for x in over_block(cone + _store_lines(group, body, "full"))]
        row.append("}")
    row += over_block(_row_stores(group, body))
    lines += ["    " + x for x in row]
    lines.append("  }")
    return lines


def _row_stores(group: Group, body: Body) -> list[str]:
    idx = body.outer_idx + ["0"] * len(body.inner_idx)
    return [f"out{k}[{index_expr(st.access, idx)}] = {C.store(body.arg(('stmt', st.node)), st.dtype)};"
            for k, st in enumerate(group.stores) if st.level == "row"]
