"""Fan-out: ``lumi.map`` over trivial items (a Python function returning ``x + 1``) beside
``ray.get([f.remote(i) for i in range(n)])`` with a trivial ``@ray.remote`` function, in the same Ray
session: items per second and the driver's peak memory (RSS growth over the run, sampled every 5 ms).

Each measurement runs in a fresh driver process joined to one cluster, so one run's heap does not
flatter the next; a smaller run beside each shows how the driver's memory grows with the items.
``--heap`` adds the peak growth of the driver's Python heap (tracemalloc, which slows the driver: the items/s
of those runs are not comparable).

    python benchmarks/fanout.py [--items 10000] [--small 1000] [--heap] [--address ADDR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
import tracemalloc

import psutil
import ray
from _machine import cpu_model

EMBEDDED_LOGICAL_GPUS = 4  # as the local backend offers without CUDA: GPU-shaped workers run the CPU fallback


def inc(x):
    return x + 1


class PeakRss:
    """The most this process's resident memory grew above its level at the start, sampled every 5 ms."""

    def __init__(self):
        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def measure(kind: str, n: int, heap: bool) -> dict:
    """In a driver of its own: warm up, then time ``n`` trivial items and sample the driver's memory."""
    if heap:
        tracemalloc.start()
    if kind == "lumi":
        import lumi

        assert list(lumi.map(inc, range(50), progress=False)) == list(range(1, 51))  # workers up, fn shipped
        tracemalloc.reset_peak()
        heap_base = tracemalloc.get_traced_memory()[0]
        with PeakRss() as rss:
            start = time.perf_counter()
            total = sum(lumi.map(inc, range(n), progress=False))
            seconds = time.perf_counter() - start
    else:
        f = ray.remote(inc)
        ray.get([f.remote(i) for i in range(100)])
        tracemalloc.reset_peak()
        heap_base = tracemalloc.get_traced_memory()[0]
        with PeakRss() as rss:
            start = time.perf_counter()
            total = sum(ray.get([f.remote(i) for i in range(n)]))
            seconds = time.perf_counter() - start
    assert total == n * (n + 1) // 2, total
    heap_mb = (tracemalloc.get_traced_memory()[1] - heap_base) / 2**20 if heap else None
    return {"kind": kind, "items": n, "seconds": seconds, "items_per_s": n / seconds, "peak_mb": rss.growth_mb,
            "heap_mb": heap_mb}


def child(kind: str, n: int, address: str, heap: bool) -> dict:
    env = {**os.environ, "LUMI_RAY_ADDRESS": address}
    command = [sys.executable, __file__, "--measure", kind, "--items", str(n), "--address", address]
    out = subprocess.run(command + ["--heap"] * heap, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"the {kind} run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000, help="a smaller run beside each (0: none)")
    parser.add_argument("--heap", action="store_true", help="also the Python heap's peak growth (tracemalloc; slower)")
    parser.add_argument("--address", help="join this Ray cluster instead of starting a local one")
    parser.add_argument("--measure", choices=("lumi", "ray"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from lumi.runtime import cluster

    if args.measure:
        cluster.connect(args.address)
        print(json.dumps(measure(args.measure, args.items, args.heap)))
        return
    if args.address:
        cluster.connect(args.address)
    else:
        gpus = float(cluster.cuda_device_count() or EMBEDDED_LOGICAL_GPUS)
        ray.init(address="local", num_cpus=os.cpu_count(), num_gpus=gpus, include_dashboard=False,
                 namespace=cluster.NAMESPACE, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    fallback = not cluster.cuda_device_count()
    print(f"machine: {cpu_model()}, {platform.system()} {platform.release()}, ray {ray.__version__}"
          + (", CPU fallback workers (no GPU)" if fallback else ""))
    sizes = [s for s in (args.small, args.items) if s]
    rows = [child(kind, n, address, args.heap) for kind in ("ray", "lumi") for n in sizes]
    bare = {r["items"]: r["items_per_s"] for r in rows if r["kind"] == "ray"}
    heap = " peak Python heap growth |" if args.heap else ""
    print(f"\n| run | items | seconds | items/s | vs ray.get | peak driver RSS growth |{heap}")
    print("| --- | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * args.heap)
    for r in rows:
        what = "`ray.get([f.remote(i) ...])`" if r["kind"] == "ray" else "`lumi.map(inc, range(n))`"
        extra = f" {r['heap_mb']:.1f} MiB |" if args.heap else ""
        print(f"| {what} | {r['items']:,} | {r['seconds']:.1f} | {r['items_per_s']:,.0f} | "
              f"{r['items_per_s'] / bare[r['items']]:.3f}x | {r['peak_mb']:.1f} MiB |{extra}")


if __name__ == "__main__":
    main()
