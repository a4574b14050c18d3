"""A sql task whose server stops answering without closing anything (a frozen server, a network
that drops packets): its timeout still ends the attempt, whether the statement was running,
the connection was being made, or a pooled connection was being checked.

The server is reached through a TCP relay of the test's own, which can freeze: it keeps every
connection open and accepts new ones, but forwards nothing more, as a hung server (or a
firewall dropping packets) does. Cancels go through it too, so they never arrive."""

from __future__ import annotations

import json
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from engine_helpers import log_text, run_agent, run_job, start_run, tasks, wait_for
from sql_targets import Target

from taskplan.engine import Engine
from taskplan.store.db import Store


class FreezingRelay:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.held.append(client)
            if self.frozen.is_set():
                continue  # accepted and never answered
            upstream = socket.create_connection(self.upstream)
            self.held.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        while not self.closed.is_set():
            if self.frozen.is_set():
                self.closed.wait(0.05)  # hold both ends open, forward nothing
                continue
            try:
                ready, _, _ = select.select([a, b], [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionResetError
                    peer[sock].sendall(data)
            except (OSError, ValueError):  # one end closed (or dropped by the test)
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return

    def drop(self) -> None:
        """Close every connection made so far (new ones are relayed as before)."""
        held, self.held = self.held, []
        for sock in held:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.closed.set()
        self.server.close()
        self.drop()


@pytest.fixture
def relayed(target: Target, monkeypatch: pytest.MonkeyPatch) -> Iterator[FreezingRelay]:
    """TP_TARGET_URL through a relay that can freeze (servers only: SQLite has none)."""
    if target.kind == "sqlite":
        pytest.skip("SQLite has no server to hang")
    parts = urlsplit(target.url)
    assert parts.hostname is not None and parts.port is not None
    relay = FreezingRelay(parts.hostname, parts.port)
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{relay.port}")
    monkeypatch.setenv("TP_TARGET_URL", urlunsplit(parts._replace(netloc=netloc)))
    yield relay
    relay.close()


def job(tasks: dict[str, Any]) -> str:
    return json.dumps({"job": "hung", "connections": {"db": "${TP_TARGET_URL}"},
                       "defaults": {"connection": "db"}, "tasks": tasks})


def _timed_out(store: Store, run_id: int, name: str) -> str:
    t = tasks(store, run_id)[name]
    assert (t["state"], t["error"]) == ("failed", "timed out after 1s"), t
    return log_text(store, t["id"])


def test_a_statement_whose_server_hangs_ends_at_its_timeout(
        engine: Engine, store: Store, target: Target, relayed: FreezingRelay) -> None:
    marker = target.name("hung")
    run_id = start_run(engine, job({"slow": {"sql": target.sleep_sql(30, marker),
                                             "timeout": "1s"}}))

    def freeze_once_running() -> None:
        wait_for(lambda: target.running_with(marker) == 1, 10, "the statement to start")
        relayed.frozen.set()  # neither its end nor its cancel can get through now

    watcher = threading.Thread(target=freeze_once_running, daemon=True)
    watcher.start()
    # Without the cut the attempt would wait for the frozen server: the guard fails it.
    run_agent(engine, run_id, timeout=20)
    watcher.join(10)
    assert relayed.frozen.is_set()
    log = _timed_out(store, run_id, "slow")
    assert "the server did not answer the cancel: connection closed" in log


def test_connecting_to_a_hung_server_ends_at_the_timeout(
        engine: Engine, store: Store, target: Target, relayed: FreezingRelay) -> None:
    relayed.frozen.set()  # the TCP connect succeeds; the server's greeting never comes
    run_id, _ = run_job(engine, job({"q": {"sql": "SELECT 1", "timeout": "1s"}}))
    log = _timed_out(store, run_id, "q")
    assert "timed out after 1s while connecting to 'db'" in log


def test_a_pooled_connection_to_a_server_that_hung_meanwhile_ends_at_the_timeout(
        engine: Engine, store: Store, target: Target, relayed: FreezingRelay) -> None:
    first, _ = run_job(engine, job({"q": {"sql": "SELECT 1"}}))  # leaves a pooled connection
    assert tasks(store, first)["q"]["state"] == "succeeded"
    relayed.frozen.set()
    run_id = start_run(engine, job({"q": {"sql": "SELECT 2", "timeout": "1s"}}))
    run_agent(engine, run_id, timeout=20)
    _timed_out(store, run_id, "q")


def test_a_pooled_connection_the_server_closed_is_replaced(
        engine: Engine, store: Store, target: Target, relayed: FreezingRelay) -> None:
    first, _ = run_job(engine, job({"q": {"sql": "SELECT 1"}}))
    assert tasks(store, first)["q"]["state"] == "succeeded"
    relayed.drop()  # as a server restart does: the pooled connection is dead
    run_id, _ = run_job(engine, job({"q": {"sql": "SELECT 2"}}))
    assert tasks(store, run_id)["q"]["state"] == "succeeded"


def test_a_foreach_query_on_a_pooled_connection_the_server_closed_is_replaced(
        engine: Engine, store: Store, target: Target, relayed: FreezingRelay) -> None:
    fan = {"fan": {"foreach": {"sql": "SELECT 1 AS n", "connection": "db"},
                   "sql": "SELECT :item_n"}}
    first, _ = run_job(engine, job(fan))
    assert tasks(store, first)["fan"]["state"] == "succeeded"
    relayed.drop()
    run_id, _ = run_job(engine, job(fan))
    assert tasks(store, run_id)["fan"]["state"] == "succeeded", tasks(store, run_id)


def test_the_longest_timeout_is_taken_by_every_driver(engine: Engine, store: Store,
                                                      target: Target) -> None:
    # (PyMySQL refuses a connect_timeout over a year: the attempt's bound must not reach it.)
    run_id, _ = run_job(engine, job({"q": {"sql": "SELECT 1", "timeout": "366d"}}))
    assert tasks(store, run_id)["q"]["state"] == "succeeded", tasks(store, run_id)
