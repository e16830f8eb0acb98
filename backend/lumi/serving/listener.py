"""The gateway's listening socket, held by the local backend's daemon so that it outlives the gateway's process.

When Ray restarts a gateway that died, the new process needs a few seconds to come up. Were the socket its
own, the port would be closed meanwhile and clients would get "connection refused". The local backend's
daemon (``runtime/head.py``) binds the gateway's socket itself and hands a copy of it to each gateway process
(:func:`receive`), over a Unix socket in Linux's abstract namespace named after ``LUMI_HOME``; only processes
of the same user get it. The kernel keeps the port listening as long as one process holds the socket, so
connections made while the gateway restarts wait in its backlog and are answered once the new process
accepts; only requests that were in flight when the old process died are cut off.

A gateway on a configured cluster (``LUMI_RAY_ADDRESS``) has no daemon beside it and listens on its own socket:
there a load balancer or Kubernetes Service in front of it plays this part.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
import threading
from pathlib import Path

_HELLO = b"lumi-gateway-socket"
_CREDENTIALS = struct.Struct("3i")  # pid, uid, gid of the peer (SO_PEERCRED)


def address(home: str | os.PathLike) -> str:
    """The abstract Unix socket name under which the daemon of ``home`` hands out the gateway's socket."""
    digest = hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:24]
    return f"\0lumi-gateway-{digest}"


def hold(sock: socket.socket, home: str | os.PathLike) -> None:
    """Listen on ``sock`` and, from a daemon thread, hand a copy of it to every process of this user that asks
    under :func:`address` (``home``) for as long as this process lives."""
    sock.listen(2048)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address(home))
    server.listen(16)
    threading.Thread(target=_hand_out, args=(server, sock), name="lumi-gateway-socket", daemon=True).start()


def _hand_out(server: socket.socket, sock: socket.socket) -> None:
    while True:
        conn, _ = server.accept()
        with conn, contextlib.suppress(OSError):
            _, uid, _ = _CREDENTIALS.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                            _CREDENTIALS.size))
            if uid == os.getuid():
                socket.send_fds(conn, [_HELLO], [sock.fileno()])


def receive(home: str | os.PathLike) -> socket.socket | None:
    """The gateway's listening socket from the daemon of ``home``; None when no daemon holds one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.settimeout(5.0)
            conn.connect(address(home))
            message, fds, _, _ = socket.recv_fds(conn, len(_HELLO), 1)
        except OSError:
            return None
    if message != _HELLO or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        return None
    return socket.socket(fileno=fds[0])
