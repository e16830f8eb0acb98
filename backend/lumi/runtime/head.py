"""The local backend: one Ray head per machine and ``LUMI_HOME``, shared by every kernel, the panel and the CLI.

The first process that needs Lumi (the Jupyter server extension, a kernel, ``lumi serve``) calls
:func:`ensure_head`. Under a file lock it either finds the head recorded in
``$LUMI_HOME/backend.json`` alive, or replaces a stale record by starting a new head: a detached
daemon (``python -m lumi.runtime.head``, its own session, so it outlives whoever started it) that
starts a local Ray with explicit resources, then the dispatcher and the gateway (holding the gateway's
listening socket: ``serving/listener.py``), writes the record
and waits for SIGTERM (:func:`stop_head`, ``lumi stop``, ``%lumi stop``), when it shuts Ray down.

Ray's own token authentication guards the head: the token lives in ``$LUMI_HOME/ray-token``
(mode 0600) unless ``RAY_AUTH_MODE`` is set explicitly, and every joiner uses the mode the
record names, so a kernel never meets Ray's "token authentication is enabled" warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..errors import LumiError
from .config import load_config, setting

RECORD = "backend.json"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
EMBEDDED_LOGICAL_GPUS = 4
_DAEMON = "lumi.runtime.head"


def home() -> Path:
    return load_config().home


def record_path() -> Path:
    """Where the running backend is recorded: ``$LUMI_HOME/backend.json``."""
    return home() / RECORD


def gateway_file() -> Path:
    """Where the gateway is recorded (its URL and admin key): ``$LUMI_HOME/gateway.json`` (default ``~/.lumi``).

    Only ``LUMI_HOME`` is read, not all of ``load_config``, so that a broken tier or price setting cannot take the
    panel (or ``lumi stop``) down with it."""
    return setting("LUMI_HOME") / "gateway.json"


def _port_answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def _daemon_alive(pid: int) -> bool:
    """Whether ``pid`` is still a head daemon (not a dead one's recycled pid)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and _DAEMON in " ".join(process.cmdline())
    except psutil.Error:
        return False


def alive(record: dict) -> bool:
    """Whether the head a record names is running and its GCS answers."""
    try:
        return _daemon_alive(int(record["pid"])) and _port_answers(record["address"])
    except (KeyError, TypeError, ValueError):
        return False


def read_record() -> dict | None:
    """The recorded head if it is alive, else None (a stale record is never joined)."""
    try:
        record = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and alive(record) else None


def use_auth(record: dict) -> None:
    """Make this process speak the head's authentication mode before it joins."""
    mode = record.get("auth_mode", "token")
    if os.environ.get("RAY_AUTH_MODE") == mode and (mode != "token" or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        return
    os.environ["RAY_AUTH_MODE"] = mode
    if mode == "token" and record.get("token_file"):
        os.environ["RAY_AUTH_TOKEN_PATH"] = record["token_file"]
    with contextlib.suppress(Exception):  # refresh Ray's cached config so it sees the mode (as Ray does itself)
        from ray._raylet import Config

        Config.initialize("")


@contextlib.contextmanager
def _locked():
    path = home() / "backend.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _auth_env() -> dict[str, str]:
    """The head's authentication: ``RAY_AUTH_MODE`` if set, else a token in ``$LUMI_HOME/ray-token``."""
    mode = os.environ.get("RAY_AUTH_MODE", "token")
    env = {"RAY_AUTH_MODE": mode}
    if mode == "token":
        token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or home() / "ray-token")
        if not token.exists():
            token.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        env["RAY_AUTH_TOKEN_PATH"] = str(token)
    return env


def ray_temp_dir_for(lumi_home: str | os.PathLike) -> str:
    """Ray's session files for a ``LUMI_HOME``: short (Ray's socket paths live under it) and per user."""
    digest = hashlib.sha256(str(Path(lumi_home).resolve()).encode()).hexdigest()[:10]
    return f"/tmp/lumi-{os.getuid()}-{digest}"


def ray_temp_dir() -> str:
    return ray_temp_dir_for(home())


def ensure_head() -> dict:
    """The running local head's record, starting one if none is alive (waits until it is ready)."""
    record = read_record()
    if record is not None:
        return record
    with _locked():
        record = read_record()
        if record is not None:
            return record
        with contextlib.suppress(FileNotFoundError):
            record_path().unlink()  # stale: its head is gone
        return _start()


def _start() -> dict:
    log = home() / "backend.log"
    env = {**os.environ, **_auth_env(), "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "wb") as out:
        daemon = subprocess.Popen([sys.executable, "-m", _DAEMON], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True, cwd=str(home()))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise LumiError(f"the local Lumi backend did not start (exit {daemon.returncode}); its log, {log}, ends: "
                            f"{log.read_text(errors='replace')[-1500:]}")
        try:
            record = json.loads(record_path().read_text())
            if record.get("pid") == daemon.pid:
                return record
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    daemon.terminate()
    raise LumiError(f"the local Lumi backend did not start within {START_TIMEOUT_S:g} s; see {log}")


def stop_head() -> dict | None:
    """Stop the recorded head (SIGTERM: it shuts Ray down) and forget it; the stopped record, or None."""
    with _locked():
        record = read_record()
        with contextlib.suppress(FileNotFoundError):
            record_path().unlink()
        with contextlib.suppress(FileNotFoundError):
            gateway_file().unlink()
        if record is None:
            return None
        import psutil

        try:
            process = psutil.Process(int(record["pid"]))
            process.terminate()
            process.wait(STOP_TIMEOUT_S)
        except psutil.TimeoutExpired:
            process.kill()
        except psutil.Error:
            pass
        return record


def resources() -> tuple[int, float]:
    """CPUs and GPUs the head offers: ``$LUMI_HEAD_CPUS`` / ``$LUMI_HEAD_GPUS``, else every CPU, and the CUDA
    devices or, without any, logical GPUs so that GPU-shaped workers schedule (and run the CPU fallback)."""
    from .cluster import cuda_device_count

    gpus = setting("LUMI_HEAD_GPUS")
    if gpus is None:
        gpus = float(cuda_device_count() or EMBEDDED_LOGICAL_GPUS)
    return setting("LUMI_HEAD_CPUS"), gpus


def _serve() -> None:
    """The daemon: start Ray, the dispatcher and the gateway, record them, run until SIGTERM."""
    import ray

    from ..serving import listener
    from ..serving.gateway import ensure_gateway, gateway_socket
    from .cluster import NAMESPACE
    from .dispatcher import get_dispatcher

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cpus, gpus = resources()
    ray.init(address="local", num_cpus=cpus, num_gpus=gpus, include_dashboard=False, namespace=NAMESPACE,
             object_store_memory=setting("LUMI_OBJECT_STORE_BYTES"),
             _temp_dir=ray_temp_dir(), logging_level=logging.WARNING, log_to_driver=False)
    try:
        get_dispatcher()
        listener.hold(gateway_socket(), home())  # the gateway's port stays open while Ray restarts its process
        gateway = ensure_gateway()
        record = {"address": ray.get_runtime_context().gcs_address, "pid": os.getpid(), "cpus": cpus, "gpus": gpus,
                  "auth_mode": os.environ.get("RAY_AUTH_MODE", "token"),
                  "token_file": os.environ.get("RAY_AUTH_TOKEN_PATH"), "temp_dir": ray_temp_dir(),
                  "gateway": gateway["url"], "started_at": time.time()}
        tmp = record_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, record_path())
        while True:
            time.sleep(3600)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    _serve()
