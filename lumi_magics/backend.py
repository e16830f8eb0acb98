"""The backend as a notebook sees it: the shared local backend (or a configured cluster) and its gateway."""

from __future__ import annotations

import logging
import threading

from lumi.runtime import cluster, head

_log = logging.getLogger("lumi")
_gateway_started = threading.Event()


def start_backend() -> None:
    """Connect to Ray (joining, or starting, the machine's local backend) and make sure a gateway runs
    there, in the background, so a notebook that only runs ``%%remote`` cells still shows in the panel."""
    cluster.ensure_connected()
    if _gateway_started.is_set():
        return
    _gateway_started.set()
    threading.Thread(target=_start_gateway, name="lumi-gateway-start", daemon=True).start()


def _start_gateway() -> None:
    from lumi.serving.gateway import ensure_gateway

    try:
        ensure_gateway()
    except Exception as e:  # the panel then says "not connected"; the cell itself is unaffected
        _log.warning("Lumi could not start its HTTP gateway: %s", e)
        _gateway_started.clear()


def stop_backend() -> dict | None:
    """Leave the cluster and stop the local backend (every kernel's, the panel's); the stopped record."""
    cluster.disconnect()
    _gateway_started.clear()
    return head.stop_head()
