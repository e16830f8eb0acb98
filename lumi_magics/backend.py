"""The embedded backend as a notebook sees it: Ray, the dispatcher and the HTTP gateway."""

from __future__ import annotations

import logging
import threading

from lumi.runtime.cluster import ensure_connected

_log = logging.getLogger("lumi")
_gateway_started = threading.Event()


def start_backend() -> None:
    """Connect to Ray and start the gateway (which the sidebar panel reads) in the background,
    so a notebook that only runs ``%%remote`` cells still shows up in the panel."""
    ensure_connected()
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
