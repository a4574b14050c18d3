"""Serving the app with uvicorn: on the main thread (`taskplan web`) or beside the scheduler
and agent (`taskplan serve --port`). The socket is bound here first, so a port in use or a bad
address is one clear error before anything starts."""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING

from taskplan.errors import UsageError

if TYPE_CHECKING:
    import uvicorn

    from taskplan.engine import Engine


def bind(host: str, port: int) -> socket.socket:
    # An IPv6 address as a URL writes it ([::1]) is the address inside the brackets.
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def make_server(engine: Engine, sock: socket.socket, *, timezone: str, token: str | None
                ) -> uvicorn.Server:
    import uvicorn

    from taskplan.web.app import create_app

    # Without a token only loopback names may reach the console: a page on another site
    # that rebinds its own name to 127.0.0.1 sends its own name as Host.
    app = create_app(engine, timezone=timezone, token=token, loopback_hosts_only=token is None)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    # The event streams end once the server is told to exit (a signal, serve's shutdown):
    # an open one would otherwise hold the exit for the graceful timeout, then be cancelled
    # with a traceback in the log.
    app.state.server = server
    return server


def start_in_thread(server: uvicorn.Server, sock: socket.socket) -> threading.Thread:
    """uvicorn installs no signal handlers off the main thread: the caller stops it with
    `server.should_exit = True`."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="taskplan-web", daemon=True)
    thread.start()
    return thread
