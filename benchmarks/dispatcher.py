"""Dispatcher overhead: jobs/s through the dispatcher (one client, and 16 concurrent clients each
submitting a trivial graph and awaiting its result) and the p50 round trip of a trivial ``%%remote``
cell, each beside bare ``ray.get(actor.method.remote())`` calls (one thread, and 16 threads) measured
in the same run, with the CPU time each kind of process (this client, the dispatcher, the workers, Ray's raylet
and GCS) spent per call and per job.

    python benchmarks/dispatcher.py [--jobs 400] [--cells 40] [--clients 16] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time

import lumi
import numpy as np
import psutil
import ray
from _machine import cpu_model
from lumi.runtime import cluster
from lumi.runtime.dispatcher import get_dispatcher
from lumi.runtime.worker import Worker


def machine() -> str:
    return f"{cpu_model()}, {platform.system()} {platform.release()}, ray {ray.__version__}"


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def bare_round_trip(n: int) -> list[float]:
    actor = Worker.options(num_gpus=0.01).remote()
    ray.get(actor.info.remote())
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        ray.get(actor.info.remote())
        samples.append(time.perf_counter() - start)
    ray.kill(actor)
    return samples


def closed_loop(clients: int, seconds: float, call) -> float:
    """Calls per second from ``clients`` threads each running ``call()`` back to back for ``seconds``."""
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        while time.perf_counter() < stop:
            call()
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start)


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by each kind of process on this machine: this client, the dispatcher, the workers,
    Ray's raylet and GCS, everything else."""
    used: dict[str, float] = {}
    for p in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        cmdline, times = " ".join(p.info["cmdline"] or []), p.info["cpu_times"]
        if times is None:
            continue
        kind = ("client" if p.info["pid"] == os.getpid() else "dispatcher" if "ray::Dispatcher" in cmdline
                else "workers" if "ray::Worker" in cmdline else "raylet" if "raylet/raylet" in cmdline
                else "gcs" if "gcs_server" in cmdline else "other")
        used[kind] = used.get(kind, 0.0) + times.user + times.system
    return used


def closed_loop_cpu(clients: int, seconds: float, call) -> tuple[float, dict[str, float]]:
    """:func:`closed_loop`'s rate, and the CPU milliseconds each kind of process spent per call meanwhile."""
    before, start = cpu_seconds(), time.perf_counter()
    rate = closed_loop(clients, seconds, call)
    after, calls = cpu_seconds(), rate * (time.perf_counter() - start)
    return rate, {k: (after[k] - before.get(k, 0.0)) / calls * 1e3 for k in after if after[k] > before.get(k, 0.0)}


def concurrent_rates(clients: int, seconds: float) -> tuple[float, float, dict, dict]:
    """(bare actor calls/s, dispatcher jobs/s, CPU ms per bare call, CPU ms per job), each from ``clients``
    threads; the last also holds the mean jobs per worker call."""
    actor = Worker.options(num_gpus=0.01).remote()
    ray.get(actor.info.remote())
    bare, bare_cpu = closed_loop_cpu(clients, seconds, lambda: ray.get(actor.info.remote()))
    ray.kill(actor)
    x = np.ones(4, np.float32)
    graph = lumi.trace(lambda x: x + 1, x)
    lumi.submit(graph, x).result(timeout=120)
    before = ray.get(get_dispatcher().counters.remote())
    jobs, jobs_cpu = closed_loop_cpu(clients, seconds, lambda: lumi.submit(graph, x).result(timeout=120))
    time.sleep(1.5)  # what ran on lanes is counted once their workers have reported it (every 0.5 s)
    after = ray.get(get_dispatcher().counters.remote())
    done, on_lanes = after["done"] - before["done"], after["lane_jobs"] - before["lane_jobs"]
    per_call = (done - on_lanes) / max(1, after["worker_calls"] - before["worker_calls"])
    return bare, jobs, bare_cpu, {**jobs_cpu, "jobs per worker call": per_call, "on lanes": on_lanes / max(1, done)}


def shown(cpu: dict[str, float]) -> str:
    parts = [f"{kind} {ms:.2f}" for kind, ms in sorted(cpu.items(), key=lambda kv: -kv[1]) if ms >= 0.01]
    return f"{sum(cpu.values()):.2f} ms ({', '.join(parts)})"


def dispatcher_throughput(n: int) -> tuple[float, list[float]]:
    x = np.ones(4, np.float32)
    graph = lumi.trace(lambda x: x + 1, x)
    lumi.submit(graph, x).result(timeout=120)  # workers up, graph and input uploaded once
    start = time.perf_counter()
    jobs = [lumi.submit(graph, x) for _ in range(n)]
    for job in jobs:
        job.result(timeout=120)
    throughput = n / (time.perf_counter() - start)
    serial = []
    for _ in range(min(n, 100)):
        t = time.perf_counter()
        lumi.submit(graph, x).result(timeout=120)
        serial.append(time.perf_counter() - t)
    return throughput, serial


def remote_cells(n: int) -> list[float]:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lumi_magics")
    shell.run_cell("import numpy as np\nx = np.ones(4, np.float32)")
    samples = []
    for _ in range(n + 1):
        start = time.perf_counter()
        result = shell.run_cell("%%remote\ny = x + 1")
        assert result.success, result.error_in_exec
        samples.append(time.perf_counter() - start)
    return samples[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    cluster.connect()
    ray.get(get_dispatcher().cluster.remote())
    print(f"machine: {machine()}")
    print("GPU figures still to be measured (no GPU here: workers run the CPU fallback)")
    bare = bare_round_trip(300)
    throughput, serial = dispatcher_throughput(args.jobs)
    cells = remote_cells(args.cells)
    bare_rate, job_rate, bare_cpu, job_cpu = concurrent_rates(args.clients, args.seconds)
    bare_ms = p50_ms(bare)
    print(f"bare ray.get(actor.method.remote()) p50: {bare_ms:.2f} ms ({1e3 / bare_ms:.0f} calls/s one at a time)")
    print(f"dispatcher throughput, {args.jobs} trivial graphs submitted then awaited: {throughput:.0f} jobs/s "
          f"(x{throughput * bare_ms / 1e3:.2f} the bare call rate)")
    serial_ms = p50_ms(serial)
    print(f"lumi.submit(...).result() p50, one at a time: {serial_ms:.2f} ms (x{serial_ms / bare_ms:.1f} bare)")
    print(f"trivial %%remote cell p50: {p50_ms(cells):.2f} ms (x{p50_ms(cells) / bare_ms:.1f} bare)")
    print(f"{args.clients} concurrent clients, submit + result each: {job_rate:.0f} jobs/s against "
          f"{bare_rate:.0f} bare calls/s from {args.clients} threads (x{job_rate / bare_rate:.2f}; goal 0.5x)")
    print(f"CPU per bare call: {shown(bare_cpu)}")
    per_call, on_lanes = job_cpu.pop("jobs per worker call"), job_cpu.pop("on lanes")
    print(f"CPU per job: {shown(job_cpu)}; {on_lanes:.0%} of the jobs ran on lanes, the others "
          f"{per_call:.1f} per worker call")


if __name__ == "__main__":
    main()
