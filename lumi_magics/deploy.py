"""``%%deploy NAME``: trace the function a cell defines and serve it as a versioned, batched, autoscaled endpoint."""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import threading

import lumi
import numpy as np
import pandas as pd
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from lumi.errors import LumiError
from lumi.graph import shapes as S
from lumi.runtime.jobs import check_interrupts, keeping_interrupts
from lumi.runtime.options import GpuRequest, check_endpoint_tenant
from lumi.serving.endpoint import Endpoint, raise_for, unreachable
from lumi.serving.endpoint import deploy as upload
from lumi.serving.gateway import ensure_gateway
from lumi.serving.keys import keys_path

from .line import command
from .options import key_principal, placement_arguments

BATCH = "batch"
_INPUT = re.compile(r"^(?P<name>[A-Za-z_]\w*):(?P<dtype>\w+)\[(?P<dims>[^\]]*)\]$")


def parse_input(text: str) -> tuple[str, lumi.graph.trace.Spec]:
    """``x:float32[batch,784]`` as a name and a :func:`lumi.spec`."""
    m = _INPUT.match(text.replace(" ", ""))
    if not m:
        raise LumiError(f"--input {text!r} is not NAME:DTYPE[DIMS], e.g. x:float32[batch,784]")
    dims = [int(d) if d.isdigit() else d for d in m["dims"].split(",") if d]
    return m["name"], lumi.spec(dims, m["dtype"])


def _example_spec(value, what: str) -> lumi.graph.trace.Spec:
    if not isinstance(value, np.ndarray) or value.ndim == 0:
        raise LumiError(f"{what} must be a NumPy array with a batch dimension first")
    return lumi.spec((BATCH, *value.shape[1:]), value.dtype)


def input_specs(fn, inputs: list[str], examples: list[str], ns: dict) -> list:
    """One spec per parameter of ``fn``: from --input, then --example (in order, or PARAM=NAME), then a
    namespace array named like the parameter."""
    params = [p.name for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    given = dict(parse_input(t) for t in inputs)
    unknown = set(given) - set(params)
    if unknown:
        raise LumiError(f"--input names {sorted(unknown)} are not parameters of {fn.__name__}{tuple(params)}")
    pending = [p for p in params if p not in given]
    for ex in examples:
        param, _, name = ex.rpartition("=")
        param = param or (pending[0] if pending else None)
        if param not in pending:
            raise LumiError(f"--example {ex}: no parameter left to describe (parameters are {params})")
        if name not in ns:
            raise LumiError(f"--example {name}: no such name in the notebook")
        given[param] = _example_spec(ns[name], f"--example {name}")
        pending.remove(param)
    for p in list(pending):
        if isinstance(ns.get(p), np.ndarray):
            given[p] = _example_spec(ns[p], f"notebook variable {p!r}")
            pending.remove(p)
    if pending:
        raise LumiError(f"say what {fn.__name__} takes: --input {pending[0]}:float32[batch,784] (or --example "
                        f"{pending[0]}=ARRAY with a notebook array whose first dimension is the batch)")
    return [given[p] for p in params]


def _function_name(cell: str, fn: str | None) -> str:
    if fn:
        return fn
    defs = [s.name for s in ast.parse(cell).body if isinstance(s, ast.FunctionDef)]
    if not defs:
        raise LumiError("the cell defines no function; write `def predict(x): ...` (or name one with --fn)")
    return defs[-1]


def _curl(url: str, graph: lumi.Graph) -> str:
    example = {}
    for name, shape, dtype in graph.input_specs():
        concrete = S.resolve(shape, {d: 1 for d in S.symbols(shape)})
        example[name] = np.zeros(concrete, dtype=dtype).tolist()
    body = json.dumps({"inputs": example})
    if len(body) > 300:
        body = body[:120] + " ... " + body[-40:]
        note = "   # the body is shortened here: send one full row per input"
    else:
        note = ""
    return (f"curl -s {url} -H \"Authorization: Bearer $LUMI_KEY\" -H 'Content-Type: application/json' "
            f"-d '{body}'{note}")


@magic_arguments()
@argument("name", help="endpoint name (letters, digits, '_', '.', '-')")
@argument("--fn", default=None, help="the function to deploy (default: the last def in the cell)")
@argument("--input", action="append", default=[], metavar="NAME:DTYPE[DIMS]",
          help="an input's spec, e.g. x:float32[batch,784] (repeatable)")
@argument("--example", action="append", default=[], metavar="[PARAM=]ARRAY",
          help="infer an input's spec from a notebook array; its first dimension becomes the batch (repeatable)")
@argument("--min-replicas", type=int, default=0, help="replicas kept warm (default 0: scale to zero)")
@argument("--max-replicas", type=int, default=4, help="most replicas under load (default 4)")
@argument("--max-batch", type=int, default=32, help="most rows gathered into one run (default 32)")
@argument("--max-wait-ms", type=float, default=5.0, help="longest a request waits for a batch to fill (default 5)")
@argument("--scaledown-window", type=float, default=60.0,
          help="idle seconds before replicas are stopped (default 60)")
@placement_arguments()
@argument("--onnx", default=None, metavar="PATH",
          help="deploy this ONNX model (read with lumi.from_onnx) instead of a function of the cell")
def deploy(line: str, cell: str, shell=None):
    """Deploy the function this cell defines as a versioned HTTP endpoint with batching and autoscaling.

    The function (the last ``def``, or ``--fn``) takes arrays whose first dimension is the batch;
    notebook arrays it reads become the model's weights. Prints the URL, the version and a curl
    example that reads the API key from $LUMI_KEY (never the key itself), and binds NAME to a
    ``lumi.Endpoint``: ``NAME(x)`` calls the endpoint. Redeploying changed weights makes a new
    version; ``NAME.rollback()`` returns to the previous one. With --onnx PATH the cell may be empty and
    the ONNX model is deployed instead.

    Example:

        %%deploy mlp --input x:float32[batch,784] --max-batch 64 --scaledown-window 300
        def predict(x):
            return np.maximum(x @ w1 + b1, 0) @ w2 + b2
    """
    args = parse_argstring(deploy, line)
    with keeping_interrupts():  # a Ctrl-C a finalizer swallowed is raised again, not lost
        _deploy(args, cell, shell)


def _deploy(args, cell: str, shell) -> None:
    gpu = GpuRequest.parse(args.gpu)  # malformed placement options are refused before the cell runs
    ns = shell.user_ns
    if args.onnx:
        graph = lumi.from_onnx(args.onnx)
    else:
        name = _function_name(cell, args.fn)
        shell.run_cell(cell, store_history=False, silent=True).raise_error()
        fn = ns.get(name)
        if not callable(fn):
            raise LumiError(f"{name!r} is not a function the cell defines")
        graph = lumi.trace(fn, *input_specs(fn, args.input, args.example, ns))
    gateway = ensure_gateway()
    if args.tenant is not None:
        principal = key_principal(gateway["key"])
        check_endpoint_tenant(args.tenant, principal.tenant if principal else None,
                              how=", then graph.export(FILE) and `lumi deploy FILE --key KEY`")
    sending = _Upload(args.name)  # sends nothing yet: an interrupt before the try has nothing to report
    try:
        info = sending.send(graph, gateway, gpu=str(gpu) if gpu else None, min_replicas=args.min_replicas,
                            max_replicas=args.max_replicas, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                            scaledown_window=args.scaledown_window, tier=args.tier)
        handle = Endpoint(args.name)  # on the gateway in gateway.json, which it follows when the backend restarts
        ns[args.name] = handle
        new = "" if info["created"] else " (identical to an existing version, now active again)"
        batching = (f"batching on (up to {args.max_batch} rows, {args.max_wait_ms:g} ms)" if info["batching"]
                    else f"batching off: {info['batching_reason']}")
        print(f"Deployed {args.name!r} version {info['version']}{new}, sha256 {info['sha256'][:12]}; {batching}\n"
              f"URL: {handle.url}\n"
              f"Replicas: {args.min_replicas}..{args.max_replicas}, stopped after {args.scaledown_window:g} s idle\n"
              f"Try it (curl reads the key from $LUMI_KEY: `export LUMI_KEY=$(lumi keys show)`; keys live in "
              f"{keys_path()}):\n  {_curl(handle.url, graph)}\n"
              f"From Python: {args.name}(x), or lumi.Endpoint({args.name!r}) in any process")
    except KeyboardInterrupt:
        for _ in (0, 1):  # says what the gateway deployed, if anything (once more after another Ctrl-C)
            try:
                sending.interrupted(ns)
                break
            except KeyboardInterrupt:
                pass
        raise


UPLOAD_WAIT_S = 30.0  # how long a Ctrl-C during the upload waits for the gateway to say what it deployed


class _Upload:
    """The deploy request, sent from a helper thread.

    A deploy is one request: the gateway either makes (or reactivates) a version or it does not, and a
    Ctrl-C in the cell's thread neither cuts the request off halfway nor loses the gateway's answer, so
    :meth:`interrupted` can say exactly what was deployed.
    """

    def __init__(self, name: str):
        self.name, self.info, self.error = name, None, None
        self.thread: threading.Thread | None = None
        self.running = threading.Event()  # the upload's thread runs: the request goes out
        self.done = threading.Event()

    def send(self, graph, gateway: dict, **options) -> dict:
        """Upload ``graph`` as a version of the endpoint; the gateway's answer (waited for interruptibly)."""
        self.thread = threading.Thread(target=self._send, args=(graph, gateway, options),
                                       name=f"lumi-deploy-{self.name}", daemon=True)
        self.thread.start()
        while not self.done.wait(0.25):
            check_interrupts()
        check_interrupts()
        if self.error is not None:
            raise self.error
        return self.info

    def _send(self, graph, gateway: dict, options: dict) -> None:
        self.running.set()
        try:
            self.info = upload(graph, self.name, gateway["url"], gateway["key"], **options)
        except BaseException as e:  # raised in the cell's thread by send()
            self.error = e
        finally:
            self.done.set()

    def interrupted(self, ns: dict) -> None:
        """After a Ctrl-C: wait (up to ``UPLOAD_WAIT_S``; another Ctrl-C stops waiting) for the gateway's
        answer and say what it deployed; a deployed endpoint is bound to its name, as after a deploy."""
        name = self.name
        try:
            if self.thread is None or not self.running.wait(5.0):  # interrupted before its thread was started
                print(f"lumi: interrupted before the upload; nothing was deployed as {name!r}", file=sys.stderr)
                return
            if not self.done.is_set():
                print(f"lumi: interrupted; waiting up to {UPLOAD_WAIT_S:g} s for the gateway to say whether it "
                      f"deployed {name!r} (Ctrl-C again stops waiting)", file=sys.stderr)
                self.done.wait(UPLOAD_WAIT_S)
        except KeyboardInterrupt:
            pass
        if self.info is not None:
            info, url = self.info, self.info.get("url", "")
            try:
                ns[name] = Endpoint(name)
                bound = f"; {name} is bound to it"
            except Exception:
                bound = ""
            undo = (f"{name}.rollback() returns to version {info['version'] - 1}" if info["version"] > 1
                    else f"`lumi delete {name}` removes it")
            again = "" if info.get("created", True) else " (an identical earlier version, active again)"
            print(f"lumi: interrupted, but the deploy had already happened: {name!r} version {info['version']}{again} "
                  f"is active and serving at {url}{bound}. {undo}.", file=sys.stderr)
        elif self.error is not None:
            print(f"lumi: interrupted; nothing was deployed as {name!r} ({type(self.error).__name__}: {self.error})",
                  file=sys.stderr)
        else:
            print(f"lumi: interrupted; the gateway has not answered yet, so whether {name!r} got a new version is "
                  "not known: `%lumi deployments` shows it.", file=sys.stderr)


@command("deployments", "endpoints served by the gateway: versions, replicas, traffic, cost")
def deployments(args, shell) -> pd.DataFrame:
    import httpx

    gateway = ensure_gateway()
    try:
        r = httpx.get(f"{gateway['url']}/v1/endpoints", headers={"Authorization": f"Bearer {gateway['key']}"},
                      timeout=30)
    except httpx.TransportError as e:
        raise unreachable(gateway["url"], e) from None
    rows = raise_for(r).json()
    columns = ["name", "tenant", "active_version", "versions", "replicas", "min_replicas", "max_replicas",
               "requests", "rps", "p50_ms", "p99_ms", "cost", "url"]
    return pd.DataFrame([{**r, "versions": len(r["versions"])} for r in rows], columns=columns)
