"""`taskplan web` and `taskplan serve --port` as subprocesses: the bind rules, the token, the
login cookie, CSRF, and a run started through the API executed by serve's agent, with its
changes pushed as server-sent events (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from web_helpers import DEMO, TASKPLAN, Server, clean_env, wait_until

from taskplan.store.db import Store


def run_cli(args: list[str], db: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TASKPLAN, *args], cwd=cwd, env=clean_env(db), capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "demo.yaml").write_text(DEMO.lstrip())
    db = f"sqlite:///{tmp_path / 'taskplan.db'}"
    return tmp_path, db


@pytest.mark.parametrize("cmd", [["web"], ["serve", "--port", "0"]])
def test_non_loopback_needs_a_token(home: tuple[Path, str], cmd: list[str]) -> None:
    cwd, db = home
    done = run_cli([*cmd, "--host", "0.0.0.0"], db, cwd)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--token-file" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (cwd / "taskplan.db").exists()  # refused before the store was touched


@pytest.mark.parametrize("given", [["--token-file", "token"], ["--host", "0.0.0.0"]])
def test_serve_refuses_console_options_without_a_port(home: tuple[Path, str],
                                                      given: list[str]) -> None:
    """`serve --token-file F` (--port forgotten) started a scheduler and an agent, and no
    console, without a word: the token or address asked for served nothing."""
    cwd, db = home
    (cwd / "token").write_text("s3cret-token\n")
    done = subprocess.run([TASKPLAN, "serve", *given], cwd=cwd, env=clean_env(db),
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"taskplan: {given[0]} configures the web console, which serve starts"
                           " only with --port P\n")
    assert not (cwd / "taskplan.db").exists()


def test_an_ipv6_host_in_brackets_is_served(home: tuple[Path, str]) -> None:
    """`--host [::1]`, as the address is written in a URL, was 'Name or service not known'."""
    cwd, db = home
    assert run_cli(["apply", "demo.yaml"], db, cwd).returncode == 0
    proc = subprocess.Popen([TASKPLAN, "web", "--host", "[::1]", "--port", "0"], cwd=cwd,
                            env=clean_env(db), stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("taskplan web: http://[::1]:"), first
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stderr:
            proc.stderr.close()


def test_bad_token_file_and_port_in_use(home: tuple[Path, str]) -> None:
    cwd, db = home
    missing = run_cli(["web", "--token-file", str(cwd / "nope")], db, cwd)
    assert missing.returncode == 2 and "nope" in missing.stderr
    (cwd / "empty").write_text("\n")
    empty = run_cli(["web", "--token-file", str(cwd / "empty")], db, cwd)
    assert empty.returncode == 2 and "empty" in empty.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        busy = run_cli(["web", "--port", str(port)], db, cwd)
    assert busy.returncode == 2 and f"127.0.0.1:{port}" in busy.stderr
    assert busy.stderr.count("\n") == 1


def test_token_login_cookie_and_csrf(home: tuple[Path, str]) -> None:
    import httpx

    cwd, db = home
    assert run_cli(["apply", "demo.yaml"], db, cwd).returncode == 0
    (cwd / "token").write_text("s3cret-token\n")
    server = Server(["web", "--token-file", str(cwd / "token")], db, cwd, token="s3cret-token")
    try:
        anon = httpx.Client(base_url=server.base, follow_redirects=False)
        r = anon.get("/api/v1/jobs")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert anon.get("/metrics").status_code == 401
        assert anon.get("/api/v1/jobs", headers={"Authorization": "Bearer wrong"}
                        ).status_code == 401
        assert anon.post("/api/v1/jobs/demo/runs").status_code == 401
        page = anon.get("/runs/1?x=1")
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/runs/1%3Fx%3D1"
        assert anon.get("/login").status_code == 200
        assert anon.get("/static/console.js").status_code == 200
        assert server.http.get("/api/v1/jobs").json()[0]["name"] == "demo"
        wrong = anon.post("/login", data={"token": "nope", "next": "/jobs"})
        assert wrong.status_code == 401 and "taskplan_session" not in wrong.headers.get(
            "set-cookie", "")
        ok = anon.post("/login", data={"token": "s3cret-token", "next": "//evil.example/x"})
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert "s3cret-token" not in cookie
        session = re.search(r"taskplan_session=([^;]+)", cookie)
        assert session
        browser = httpx.Client(base_url=server.base, cookies={"taskplan_session": session[1]})
        jobs_page = browser.get("/jobs")
        assert jobs_page.status_code == 200 and "demo" in jobs_page.text
        csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', jobs_page.text)
        assert csrf
        refused = browser.post("/api/v1/jobs/demo/runs", json={})
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
        cross = browser.post("/api/v1/jobs/demo/runs", json={},
                             headers={"X-CSRF-Token": csrf[1], "Origin": "http://evil.example"})
        assert cross.status_code == 403
        made = browser.post("/api/v1/jobs/demo/runs", json={},
                            headers={"X-CSRF-Token": csrf[1], "Origin": server.base})
        assert made.status_code == 201
        by_bearer = server.http.post(f"/api/v1/runs/{made.json()['run_id']}/cancel")
        assert by_bearer.status_code == 200 and by_bearer.json()["state"] == "cancelled"
        anon.close()
        browser.close()
    finally:
        server.stop()


def _serve_and_watch(cwd: Path, db: str) -> None:
    import httpx

    assert run_cli(["apply", "demo.yaml"], db, cwd).returncode == 0
    server = Server(["serve", "--slots", "2"], db, cwd)
    try:
        assert server.http.get("/runs").status_code == 200  # the console shares the process
        with httpx.Client(base_url=server.base, timeout=30.0) as sse, \
                sse.stream("GET", "/api/v1/stream") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            # A run created by another process: the stream tells about it.
            made = run_cli(["run", "demo", "--detach", "--param", "day=2026-01-02"], db, cwd)
            assert made.returncode == 0, made.stderr
            for line in lines:
                if line.startswith("event: change"):
                    break
        run_id = int(made.stdout.strip())

        def ended() -> bool:
            return bool(server.http.get(f"/api/v1/runs/{run_id}").json()["state"] == "failed")

        wait_until(ended, 60.0, "serve's agent to finish the run")
        status: dict[str, Any] = server.http.get(f"/api/v1/runs/{run_id}").json()
        assert {t["name"]: t["state"] for t in status["tasks"]}["load"] == "succeeded"
        logs = server.http.get(f"/api/v1/runs/{run_id}/tasks/extract/logs").json()
        assert "extract 2026-01-02" in logs["data"]
    finally:
        server.stop()
    assert server.proc.returncode == 0


def test_a_change_between_a_page_and_its_stream_is_announced(home: tuple[Path, str]) -> None:
    """A run page's stream starts from the event id read before the page's own reads: a task
    claimed while the page was on its way is announced when the stream opens (before, the
    stream started from the newest event and a page could wait forever for a change that had
    already happened)."""
    import httpx

    cwd, db = home
    assert run_cli(["apply", "demo.yaml"], db, cwd).returncode == 0
    made = run_cli(["run", "demo", "--detach"], db, cwd)
    assert made.returncode == 0, made.stderr
    run_id = int(made.stdout.strip())
    server = Server(["web"], db, cwd)
    try:
        page = server.http.get(f"/runs/{run_id}").text
        watch = re.search(r'data-watch="([^"]+)"', page)
        assert watch and "since=" in watch[1]
        url = watch[1].replace("&amp;", "&")
        assert run_cli(["cancel", str(run_id)], db, cwd).returncode == 0  # the run moves
        with httpx.Client(base_url=server.base, timeout=30.0) as sse, \
                sse.stream("GET", url) as stream:
            assert next(stream.iter_lines()) == "event: change"
        # A run that does not exist (a typo) was a stream that stayed silent for ever.
        with httpx.Client(base_url=server.base, timeout=30.0) as sse, \
                sse.stream("GET", f"/api/v1/stream?run={run_id + 1}") as stream:
            assert stream.status_code == 404
            assert json.loads(stream.read()) == {"error": f"no run {run_id + 1}",
                                                 "status": 404}
    finally:
        server.stop()


@pytest.mark.slow
def test_serve_runs_and_streams_on_sqlite(home: tuple[Path, str]) -> None:
    _serve_and_watch(*home)


@pytest.mark.slow
@pytest.mark.postgres
def test_serve_runs_and_streams_on_postgres(home: tuple[Path, str], pg_url: str) -> None:
    Store(pg_url).close()  # migrated once here, not raced by two processes
    _serve_and_watch(home[0], pg_url)


def test_without_a_token_only_loopback_host_names_are_served(home: tuple[Path, str]) -> None:
    # DNS rebinding: a page on evil.example rebinds its name to 127.0.0.1; the browser then
    # sends `Host: evil.example:PORT`, which a console without a token must not answer.
    cwd, db = home
    assert run_cli(["apply", "demo.yaml"], db, cwd).returncode == 0
    server = Server(["web"], db, cwd)
    try:
        evil = {"Host": f"evil.example:{server.port}"}
        assert server.http.get("/jobs", headers=evil).status_code == 403
        refused = server.http.post("/api/v1/jobs/demo/pause", headers=evil)
        assert refused.status_code == 403 and "loopback" in refused.json()["error"]
        assert run_cli(["jobs", "--json"], db, cwd).stdout.count('"paused": true') == 0
        for name in ("localhost", "127.0.0.1"):
            ok = server.http.get("/api/v1/jobs", headers={"Host": f"{name}:{server.port}"})
            assert ok.status_code == 200, name
    finally:
        server.stop()


@pytest.mark.postgres
def test_the_stream_says_503_while_the_store_is_down(home: tuple[Path, str], pg_url: str
                                                     ) -> None:
    """The stream reads what it needs before its answer starts: with the store away it gets
    the 503 of every other endpoint, not a 200 cut short by a server traceback."""
    import httpx
    import psycopg

    cwd, _ = home
    Store(pg_url).close()
    name = pg_url.rsplit("/", 1)[1]
    server = Server(["web"], pg_url, cwd)
    try:
        with psycopg.connect(pg_url.rsplit("/", 1)[0] + "/postgres",
                             autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = %s", (name,))
            try:
                assert server.http.get("/api/v1/runs").status_code == 503
                for url in ("/api/v1/stream", "/api/v1/stream?run=1",
                            "/api/v1/stream?since=5"):
                    with httpx.Client(base_url=server.base, timeout=30.0) as sse, \
                            sse.stream("GET", url) as stream:
                        assert stream.status_code == 503, url
                        body = json.loads(stream.read())
                        assert body["status"] == 503 and "\n" not in body["error"]
            finally:
                admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        with httpx.Client(base_url=server.base, timeout=30.0) as sse, \
                sse.stream("GET", "/api/v1/stream") as stream:
            assert stream.status_code == 200
            assert next(stream.iter_lines()).startswith("retry:")
    finally:
        server.stop()
    assert "Traceback" not in server.stderr, server.stderr


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_stopping_web_ends_its_event_streams(home: tuple[Path, str], signame: str) -> None:
    """Ctrl-C on `taskplan web` with a live page open waited for the stream to end, then
    cancelled it with two tracebacks ("Exception in ASGI application") and ended "Aborted!",
    exit 1 (SIGTERM: killed by it). The streams now end when the server is told to exit, and
    it exits 0 and quietly, as serve does."""
    import signal

    cwd, db = home
    assert run_cli(["apply", "demo.yaml"], db, cwd).returncode == 0
    server = Server(["web"], db, cwd)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            got = b""
            while b"retry: 2000" not in got:
                got += s.recv(4096)
            server.proc.send_signal(getattr(signal, signame))
            while chunk := s.recv(4096):  # the stream ends: its last chunk, then EOF
                got += chunk
        assert got.endswith(b"0\r\n\r\n")
        server.proc.wait(30)
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.stderr
    assert "Traceback" not in server.stderr and "Aborted" not in server.stderr, server.stderr


def test_a_long_line_of_output_does_not_hang_the_console(home: tuple[Path, str]) -> None:
    """A task printing a long run of letters (a line of base64, a DNA sequence) hung its
    page, and the whole `serve` process with it (its agent's heartbeats too): masking URL
    passwords scanned from every letter to the end of the run, 40 kB took seconds and 1 MB
    about an hour. The page now comes at once (the client gives up after 60 s)."""
    import httpx

    cwd, db = home
    (cwd / "long.yaml").write_text(
        "job: longline\ntasks:\n  t:\n    shell: \"head -c 1000000 /dev/zero | tr '\\\\0' x;"
        " echo ' postgresql://u:pw@h/d'\"\n")
    assert run_cli(["apply", "long.yaml"], db, cwd).returncode == 0
    done = run_cli(["run", "longline"], db, cwd)
    assert done.returncode == 0, done.stderr
    server = Server(["web"], db, cwd)
    try:
        with httpx.Client(base_url=server.base, timeout=60.0) as client:
            page = client.get("/runs/1/tasks/t")
        assert page.status_code == 200
        assert "x" * 1000 in page.text and "postgresql://u:***@h/d" in page.text
    finally:
        server.stop()
