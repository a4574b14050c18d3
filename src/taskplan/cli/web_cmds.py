"""`taskplan web`: the console, REST API and metrics alone (agents and scheduler run elsewhere)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import click

from taskplan.cli.common import db_option, get_context, handle_errors
from taskplan.store.urls import mask_url

if TYPE_CHECKING:
    import socket

DEFAULT_PORT = 8440
HOST_HELP = "Address to listen on; anything but loopback needs --token-file."
TOKEN_HELP = ("A file holding the token every API call and the login page need"
              " (required off loopback).")


def listen(host: str, port: int, token_file: str | None) -> tuple[socket.socket, str | None]:
    """Read the token, apply the loopback rule and bind, all before the store is opened."""
    from taskplan.web.auth import check_bind, read_token
    from taskplan.web.server import bind

    token = read_token(token_file) if token_file else None
    check_bind(host, token)
    return bind(host, port), token


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on.")
@click.option("--token-file", default=None, metavar="FILE", help=TOKEN_HELP)
@db_option
@handle_errors
def web_cmd(host: str, port: int, token_file: str | None, db: str | None) -> None:
    """Serve the web console, the REST API (/api/v1) and Prometheus metrics (/metrics)."""
    from taskplan.web.server import make_server, url_of

    sock, token = listen(host, port, token_file)
    ctx = get_context(db)
    engine = ctx.engine
    server = make_server(engine, sock, timezone=ctx.settings.timezone, token=token)
    click.echo(f"taskplan web: {url_of(sock)} (store {mask_url(engine.store.url)})", err=True)
    # uvicorn stops on SIGINT/SIGTERM, then raises the signal again for the handler it found:
    # this one, so a stop is a clean exit 0 (as serve's), not "Aborted!" (exit 1) or a death
    # by signal. Before uvicorn listens, it asks the server to exit as soon as it runs.
    previous = {sig: signal.signal(sig, lambda _sig, _frame: setattr(server, "should_exit",
                                                                      True))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
