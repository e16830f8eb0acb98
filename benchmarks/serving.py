"""Serving: Lumi's gateway against Ray Serve on loopback, the same graph and the same batch settings.

Both serve an MNIST-sized MLP (784-512-10, float32) traced with a symbolic batch dimension and run
by ``lumi.runtime.execute.execute`` on one replica of one CPU, with dynamic batching of up to
``MAX_BATCH`` rows or ``MAX_WAIT_MS``: Lumi through ``%%deploy``'s options, Ray Serve through
``@serve.batch(max_batch_size, batch_wait_timeout_s)``. Closed-loop clients (one row per JSON request,
encoded once) at concurrency 1, 8 and 64; then the cold start from zero replicas for both (for Lumi twice:
with the pool's idle CPU worker still up, and after it has stopped). The clients are ``wrk`` (Debian's
``apt-get install wrk``: C and epoll, so the load generator takes little of the servers' CPU) when it is
installed, else httpx in this process (``--client``).

    python benchmarks/serving.py [--seconds 5] [--client wrk|httpx]

Prints the machine, absolute figures and Lumi/Ray Serve ratios. GPU figures are still to be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter

import httpx
import numpy as np
from _machine import cpu_model
from lumi.runtime.dispatcher import CPU_WORKER_KEEP_S

MAX_BATCH = 32
MAX_WAIT_MS = 5.0
CONCURRENCY = (1, 8, 64)


def machine() -> str:
    model = cpu_model()
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i['internal_api']} {i.get('architecture', '')}".strip() for i in threadpool_info()
                         if i["user_api"] == "blas")
    except Exception:
        blas = "unknown"
    return f"{model}, BLAS {blas}, Python {platform.python_version()}"


def model():
    import lumi

    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((784, 512)) / 28).astype(np.float32)
    b1 = np.zeros(512, np.float32)
    w2 = (rng.standard_normal((512, 10)) / 22).astype(np.float32)

    def predict(x):
        return np.maximum(x @ w1 + b1, 0) @ w2

    return lumi.trace(predict, lumi.spec(("batch", 784))), predict


def request_body() -> bytes:
    x = np.random.default_rng(1).standard_normal((1, 784)).astype(np.float32)
    return json.dumps({"inputs": {"x": x.tolist()}}).encode()  # encoded once: the clients' CPU goes to the servers


def load(url: str, headers: dict, concurrency: int, seconds: float, client: str) -> dict:
    """Closed-loop clients for ``seconds`` (``client``: "wrk" or "httpx"): throughput and latency percentiles of
    the 200 responses, and how many were refused."""
    if client == "wrk":
        return load_wrk(url, headers, concurrency, seconds)
    return asyncio.run(load_httpx(url, headers, concurrency, seconds))


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def load_wrk(url: str, headers: dict, concurrency: int, seconds: float) -> dict:
    """:func:`load` with wrk (one thread, ``concurrency`` connections). Its percentiles are of every response: a
    run with refusals says so (``refused``)."""
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{request_body().decode()}]==]",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    try:
        subprocess.run(["wrk", "-t1", "-c1", "-d1s", "-s", script.name, url], capture_output=True, check=True)  # warm
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", script.name,
                              url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    found = re.search(r"(\d+) requests in ([\d.]+)(m?s|m),", out)
    total, value, unit = int(found[1]), float(found[2]), found[3]
    elapsed = value * {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit]
    refused = int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0

    def percentile(p: int) -> float:
        number, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(number) * _UNITS[unit]

    return {"rps": (total - refused) / elapsed, "p50": percentile(50), "p99": percentile(99), "refused": refused}


async def load_httpx(url: str, headers: dict, concurrency: int, seconds: float) -> dict:
    body = request_body()
    headers = {**headers, "content-type": "application/json"}
    latencies, refused = [], 0

    async def client(http):
        nonlocal refused
        while time.perf_counter() < stop:
            t = time.perf_counter()
            r = await http.post(url, content=body, headers=headers)
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t)
            else:
                refused += 1
                await asyncio.sleep(float(r.headers.get("Retry-After", 0.1)))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        for _ in range(3):  # warm up connections and the replica
            await http.post(url, content=body, headers=headers)
        start = time.perf_counter()
        stop = start + seconds
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"rps": len(lat) / elapsed, "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "refused": refused}


def timed_request(url: str, headers: dict) -> float:
    body = {"inputs": {"x": np.zeros((1, 784)).tolist()}}
    start = time.perf_counter()
    r = httpx.post(url, json=body, headers=headers, timeout=300)
    r.raise_for_status()
    return time.perf_counter() - start


def wait_until(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.25)


def bench_lumi(graph, seconds: float, client: str) -> dict:
    from lumi.serving.endpoint import Endpoint, deploy
    from lumi.serving.gateway import ensure_gateway

    gw = ensure_gateway()
    deploy(graph, "bench-warm", gw["url"], gw["key"], max_batch=MAX_BATCH, max_wait_ms=MAX_WAIT_MS,
           min_replicas=1, max_replicas=1)
    handle = Endpoint("bench-warm", gw["url"], gw["key"])
    wait_until(lambda: handle.info()["ready_replicas"] == 1)
    results = {}
    for c in CONCURRENCY:  # each level's batches: the histogram's growth over the level
        before = Counter({int(n): k for n, k in handle.info()["batch_sizes"].items()})
        results[c] = load(handle.url, handle.headers, c, seconds, client)
        sizes = Counter({int(n): k for n, k in handle.info()["batch_sizes"].items()}) - before
        results[c]["batches"] = dict(sorted(sizes.items()))
        results[c]["mean_batch"] = sum(n * k for n, k in sizes.items()) / max(1, sum(sizes.values()))
    httpx.delete(f"{gw['url']}/v1/endpoints/bench-warm", headers=handle.headers)

    deploy(graph, "bench-cold", gw["url"], gw["key"], max_batch=MAX_BATCH, max_wait_ms=MAX_WAIT_MS,
           min_replicas=0, max_replicas=1, scaledown_window=2)
    cold = Endpoint("bench-cold", gw["url"], gw["key"])
    timed_request(cold.url, cold.headers)
    wait_until(lambda: cold.info()["replicas"] == 0)
    results["cold"] = timed_request(cold.url, cold.headers)  # zero leases; the pool's CPU worker still up
    wait_until(lambda: cold.info()["replicas"] == 0)
    wait_until(lambda: not cpu_workers(), timeout=CPU_WORKER_KEEP_S + 60)
    results["cold_worker"] = timed_request(cold.url, cold.headers)  # and the worker process started anew
    httpx.delete(f"{gw['url']}/v1/endpoints/bench-cold", headers=cold.headers)
    return results


def cpu_workers() -> list[dict]:
    import ray
    from lumi.runtime.dispatcher import get_dispatcher

    return [w for w in ray.get(get_dispatcher().cluster.remote())["workers"] if w["role"] == "cpu"
            and w["state"] != "dead"]


def bench_serve(graph, seconds: float, client: str) -> dict:
    from lumi.runtime.execute import execute
    from ray import serve
    from starlette.requests import Request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})

    @serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=1000)
    class MLP:
        def __init__(self, g):
            self.graph = g

        @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=MAX_WAIT_MS / 1000)
        async def run(self, xs: list[np.ndarray]) -> list[np.ndarray]:
            rows = np.cumsum([len(x) for x in xs])[:-1]
            (y,) = execute(self.graph, [np.concatenate(xs)])
            return np.split(y, rows)

        async def __call__(self, request: Request) -> dict:
            body = await request.json()
            x = np.asarray(body["inputs"]["x"], dtype=np.float32)
            return {"outputs": {"output": (await self.run(x)).tolist()}}

    serve.run(MLP.options(num_replicas=1).bind(graph), name="warm", route_prefix="/warm")
    url = f"http://127.0.0.1:{port}/warm"
    results = {c: load(url, {}, c, seconds, client) for c in CONCURRENCY}
    serve.delete("warm")

    scaling = {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1, "downscale_delay_s": 2,
               "upscale_delay_s": 0, "target_ongoing_requests": MAX_BATCH}
    serve.run(MLP.options(autoscaling_config=scaling).bind(graph), name="cold", route_prefix="/cold")
    url = f"http://127.0.0.1:{port}/cold"
    timed_request(url, {})

    def replicas() -> int:
        return sum(serve.status().applications["cold"].deployments["MLP"].replica_states.values())

    wait_until(lambda: replicas() == 0)
    results["cold"] = timed_request(url, {})
    serve.shutdown()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per concurrency level")
    parser.add_argument("--client", choices=("wrk", "httpx"), default="wrk" if shutil.which("wrk") else "httpx",
                        help="the load generator (default: wrk when it is installed)")
    args = parser.parse_args()
    import ray
    from lumi.runtime.cluster import connect

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    connect()
    graph, _ = model()
    print(f"machine: {machine()}")
    print(f"model: MLP 784-512-10 float32, one row per request, JSON bodies; batches of up to {MAX_BATCH} rows "
          f"or {MAX_WAIT_MS:g} ms; one warm replica of one CPU; {args.seconds:g} s per level; clients: {args.client}\n")
    lumi_r = bench_lumi(graph, args.seconds, args.client)
    serve_r = bench_serve(graph, args.seconds, args.client)
    print(f"{'concurrency':>11} | {'Lumi rps':>9} {'p50 ms':>7} {'p99 ms':>7} | {'Serve rps':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7} | {'rps ratio':>9} {'p50 ratio':>9} {'p99 ratio':>9}")
    for c in CONCURRENCY:
        a, b = lumi_r[c], serve_r[c]
        print(f"{c:>11} | {a['rps']:>9.0f} {a['p50']:>7.1f} {a['p99']:>7.1f} | {b['rps']:>9.0f} {b['p50']:>7.1f} "
              f"{b['p99']:>7.1f} | {a['rps'] / b['rps']:>9.2f} {a['p50'] / b['p50']:>9.2f} {a['p99'] / b['p99']:>9.2f}")
    print(f"\n(ratios are Lumi / Ray Serve: above 1 is better for rps, below 1 is better for latency; "
          f"Lumi refused {sum(lumi_r[c]['refused'] for c in CONCURRENCY)} requests with 429, "
          f"Ray Serve {sum(serve_r[c]['refused'] for c in CONCURRENCY)})")
    for c in CONCURRENCY:
        histogram = ", ".join(f"{n}: {k}" for n, k in lumi_r[c]["batches"].items())
        print(f"Lumi batches at concurrency {c}: mean {lumi_r[c]['mean_batch']:.1f} requests; requests per batch -> "
              f"batches {{{histogram}}}")
    print(f"cold start from zero replicas (first request, end to end): Lumi {lumi_r['cold']:.2f} s, "
          f"Ray Serve {serve_r['cold']:.2f} s, ratio {lumi_r['cold'] / serve_r['cold']:.2f} (Lumi's pool still held "
          f"an idle CPU worker); once that worker had stopped too: Lumi {lumi_r['cold_worker']:.2f} s, ratio "
          f"{lumi_r['cold_worker'] / serve_r['cold']:.2f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
