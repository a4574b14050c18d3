"""Each channel against a real receiver on 127.0.0.1: e-mail through aiosmtpd with STARTTLS
and a login, a command reading the event on stdin, a webhook; Apprise without its extra."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import run_job
from notify_helpers import start_hook

from taskplan.engine import Engine
from taskplan.notify import channels
from taskplan.notify.channels import Smtp
from taskplan.notify.rules import Channel
from taskplan.notify.sender import Sender
from taskplan.store import notify_ops
from taskplan.store.db import Store

aiosmtpd = pytest.importorskip("aiosmtpd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    key, crt = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return crt, key


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.logins: list[tuple[str, str]] = []
        self.refuse: set[str] = set()  # recipients answered 550

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "tls": session.ssl is not None,
                              "msg": message_from_bytes(envelope.content)})
        return "250 OK"


@pytest.fixture
def smtp_server(cert: tuple[Path, Path]) -> Iterator[tuple[Mailbox, Smtp]]:
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    box = Mailbox()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert[0]), str(cert[1]))

    def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any
             ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"robot", b"pw")
        if ok:
            box.logins.append((data.login.decode(), mechanism))
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=auth, auth_require_tls=True)
    controller.start()
    # Credentials come from the environment, the rest from taskplan.toml's [smtp].
    smtp = Smtp.from_settings({"host": "127.0.0.1", "port": port, "from": "tp@example.com",
                               "cafile": str(cert[0])},
                              env={"TASKPLAN_SMTP_USER": "robot",
                                   "TASKPLAN_SMTP_PASSWORD": "pw"})
    try:
        yield box, smtp
    finally:
        controller.stop()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_each_event_reaches_each_channel_once(engine: Engine, store: Store, tmp_path: Path,
                                              smtp_server: tuple[Mailbox, Smtp]) -> None:
    box, smtp = smtp_server
    hook = start_hook()
    out = tmp_path / "events.jsonl"
    script = tmp_path / "receive.py"
    script.write_text("import json, os, sys\n"
                      "event = json.load(sys.stdin)\n"
                      "assert os.environ['TASKPLAN_EVENT'] == event['event']\n"
                      f"open({str(out)!r}, 'a').write(json.dumps(event) + '\\n')\n")
    events = "[run_failed, task_failed]"
    try:
        run_job(engine, f"""
job: nightly
notify:
  - {{on: {events}, webhook: "{hook.url}"}}
  - {{on: {events}, email: [ops@example.com, dba@example.com]}}
  - {{on: {events}, command: ["{sys.executable}", "{script}"]}}
tasks:
  load: {{shell: "echo boom >&2; exit 7"}}
""")
        sender = Sender(store, smtp=smtp, lease=5.0)
        assert sender.try_lead()
        while sender.deliver_due():
            pass
        assert sorted(hook.events()) == ["run_failed", "task_failed"]
    finally:
        hook.close()
    assert sorted(json.loads(line)["event"] for line in out.read_text().splitlines()) == [
        "run_failed", "task_failed"]
    assert len(box.messages) == 2 and all(m["tls"] for m in box.messages)
    assert [login for login, _ in box.logins] == ["robot", "robot"]
    subjects = sorted(m["msg"]["Subject"] for m in box.messages)
    assert subjects[0].startswith("[taskplan] nightly run 1 failed")
    assert subjects[1] == "[taskplan] nightly run 1 task load failed"
    mail = next(m for m in box.messages if "task load" in m["msg"]["Subject"])
    assert mail["to"] == ["ops@example.com", "dba@example.com"]
    body = mail["msg"].get_payload(decode=True).decode()
    assert "Error: exit code 7" in body and "Task: load (attempt 1 of 1)" in body
    with store.read() as tx:
        states = tx.all("SELECT state, COUNT(*) FROM notifications GROUP BY state")
    assert states == [("delivered", 6)]


def test_email_refuses_a_server_whose_certificate_it_cannot_verify(
        smtp_server: tuple[Mailbox, Smtp]) -> None:
    box, smtp = smtp_server
    untrusted = Smtp(host=smtp.host, port=smtp.port, sender=smtp.sender, user=smtp.user,
                     password=smtp.password)
    sent = channels.send(Channel("email", ("ops@example.com",)),
                         {"event": "test", "delivery": "d1"}, untrusted)
    assert not sent.ok and "CERTIFICATE_VERIFY_FAILED" in (sent.error or "")
    assert box.messages == []


def test_recipients_the_server_refuses_are_tried_again_alone(
        engine: Engine, store: Store, smtp_server: tuple[Mailbox, Smtp]) -> None:
    # A server that refused one address of several (550 no such user) but took the others
    # counted as delivered: that address never got it and nothing said so. The try fails for
    # it, naming it, and only it is tried again (the others are not sent a second copy).
    box, smtp = smtp_server
    box.refuse = {"dba@example.com"}
    run_job(engine, "job: nightly\nnotify: [{on: run_failed, email: [ops@example.com,"
                    " dba@example.com]}]\ntasks:\n  a: {shell: 'exit 1'}\n")
    clock = [time.time()]
    sender = Sender(store, smtp=smtp, lease=5.0, clock=lambda: clock[0])
    assert sender.try_lead()
    assert sender.deliver_due() == 1
    with store.read() as tx:
        [info] = notify_ops.list_notifications(tx)
    assert (info.state, info.channel.target) == ("pending", ("dba@example.com",))
    assert info.last_error == ("refused by the server: dba@example.com (550 5.1.1 no such"
                               " user here); delivered to ops@example.com")
    assert [m["to"] for m in box.messages] == [["ops@example.com"]]
    box.refuse = set()
    clock[0] += 60
    assert sender.try_lead() and sender.deliver_due() == 1
    with store.read() as tx:
        [info] = notify_ops.list_notifications(tx)
    assert (info.state, info.attempts) == ("delivered", 2)
    assert [m["to"] for m in box.messages] == [["ops@example.com"], ["dba@example.com"]]
    # notify test says so too, and fails.
    box.refuse = {"dba@example.com"}
    sent = channels.send(Channel("email", ("ops@example.com", "dba@example.com")),
                         {"event": "test", "delivery": "d1"}, smtp)
    assert not sent.ok and sent.left == ("dba@example.com",), sent


def test_an_email_has_the_date_and_message_id_every_message_needs(
        smtp_server: tuple[Mailbox, Smtp]) -> None:
    # Without Date (required by RFC 5322) and Message-ID, servers that do not add them pass
    # the message on as it is: filed as spam, or shown undated. One notification keeps one
    # Message-ID over its tries, so a mailbox can tell a second copy for what it is.
    from email.utils import parsedate_to_datetime

    box, smtp = smtp_server
    payload = {"event": "test", "delivery": "0b8f6a0e1d2c4f51a7e3c9d4b2a61f08"}
    for _ in range(2):
        assert channels.send(Channel("email", ("ops@example.com",)), payload, smtp).ok
    first, second = (m["msg"] for m in box.messages)
    assert parsedate_to_datetime(first["Date"]).tzinfo is not None
    assert first["Message-ID"] == second["Message-ID"] == (
        "<0b8f6a0e1d2c4f51a7e3c9d4b2a61f08.taskplan@example.com>")


def test_a_cafile_that_cannot_be_read_is_named(smtp_server: tuple[Mailbox, Smtp],
                                               tmp_path: Path) -> None:
    # Every e-mail failed with "FileNotFoundError: [Errno 2] No such file or directory",
    # naming neither the file nor the setting, even to a server that offers no TLS.
    box, smtp = smtp_server
    missing = tmp_path / "internal-ca.pem"
    wrong = Smtp(host=smtp.host, port=smtp.port, sender=smtp.sender, user=smtp.user,
                 password=smtp.password, cafile=str(missing))
    sent = channels.send(Channel("email", ("ops@example.com",)),
                         {"event": "test", "delivery": "d1"}, wrong)
    assert not sent.ok and sent.error == (
        f"[smtp] cafile {missing}: FileNotFoundError: No such file or directory"), sent
    assert box.messages == []


def test_command_failures_and_timeouts_are_reported(tmp_path: Path) -> None:
    bad = channels.send(Channel("command", ("sh", "-c", "echo nope >&2; exit 3")),
                        {"event": "test"})
    assert (bad.ok, bad.status, bad.error) == (False, 3, "exit code 3: nope")
    slow = channels.send(Channel("command", ("sleep", "5"), timeout=0.2), {"event": "test"})
    assert not slow.ok and slow.error == "timed out after 0.2s"
    missing = channels.send(Channel("command", (str(tmp_path / "nothing"),)), {"event": "x"})
    assert not missing.ok and "cannot start" in (missing.error or "")


def test_a_relative_command_runs_in_the_job_file_s_folder(engine: Engine, store: Store,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    # `command: ./alert.sh` beside the job file (where its shell tasks run) was looked for in
    # whichever folder the sending agent, scheduler or `taskplan run` had been started from:
    # "cannot start ./alert.sh: No such file or directory" from one, delivered from another.
    folder = tmp_path / "jobs"
    folder.mkdir()
    out = tmp_path / "alert.out"
    script = folder / "alert.sh"
    script.write_text(f"#!/bin/sh\npwd > {out}\n")
    script.chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run_job(engine, "job: rel\nnotify: [{on: run_failed, command: ./alert.sh --quiet}]\n"
                    "tasks:\n  a: {shell: 'exit 1'}\n", base_dir=folder)
    sender = Sender(store, lease=5.0)
    assert sender.try_lead()
    while sender.deliver_due():
        pass
    with store.read() as tx:
        [info] = notify_ops.list_notifications(tx)
    assert (info.state, info.last_error) == ("delivered", None)
    assert out.read_text().strip() == str(folder)


def test_a_relative_command_of_taskplan_toml_runs_in_its_folder(tmp_path: Path) -> None:
    from taskplan.config import Settings
    from taskplan.notify.config import default_rules

    toml = tmp_path / "taskplan.toml"
    toml.write_text('[[notify]]\non = "run_failed"\ncommand = "./page.sh"\n')
    [rule] = default_rules(Settings(db="sqlite://", config_path=toml,
                                    notify=({"on": "run_failed", "command": "./page.sh"},)))
    assert rule.channel.cwd == str(tmp_path)
    missing = channels.send(rule.channel, {"event": "run_failed"})
    assert missing.error == f"cannot start ./page.sh (in {tmp_path}): No such file or directory"


def test_a_stored_command_that_cannot_be_split_fails_its_tries_not_its_event() -> None:
    # A version applied before such commands were refused still holds one: reading its rules
    # happens in the transaction that records the run's end, which it used to abort.
    from taskplan.notify.rules import rules_from

    [rule] = rules_from([{"on": "run_failed", "command": '"/bin/alert -q'}])
    assert rule.channel.target == ('"/bin/alert -q',)
    sent = channels.send(rule.channel, {"event": "run_failed"})
    assert not sent.ok and "cannot start" in (sent.error or "")


def _trickling_server(status: int, pause: float = 0.1) -> tuple[str, socket.socket]:
    """A receiver that answers `status` at once, then its body one byte every `pause` s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: 3000\r\n\r\n".encode())
            for _ in range(3000):
                conn.sendall(b"x")
                time.sleep(pause)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/hook", server


@pytest.mark.parametrize("status", [200, 503])
def test_a_trickling_webhook_answer_does_not_outlast_the_timeout(status: int) -> None:
    """httpx's timeout bounds each read: a receiver trickling its answer's body held a try
    (and `notify test`) for as long as it trickled, 300 s here with a 1 s timeout."""
    url, server = _trickling_server(status)
    out: list[channels.Sent] = []
    try:
        worker = threading.Thread(target=lambda: out.append(channels.send(
            Channel("webhook", (url,), timeout=1.0), {"event": "test"})), daemon=True)
        worker.start()
        worker.join(30)
    finally:
        server.close()
    assert out, "the try did not end"
    [sent] = out
    assert (sent.ok, sent.status) == (status == 200, status)
    if status != 200:
        assert (sent.error or "").startswith("HTTP 503: x"), sent.error


def test_a_failed_answer_whose_body_stalls_is_still_its_status() -> None:
    """A receiver answering 503 that then stops sending its body: the try fails as 'HTTP 503'
    with the body's start, not as the read's timeout (the status was lost)."""
    url, server = _trickling_server(503, pause=60)
    try:
        sent = channels.send(Channel("webhook", (url,), timeout=1.0), {"event": "test"})
    finally:
        server.close()
    assert (sent.ok, sent.status, sent.error) == (False, 503, "HTTP 503: x")


def test_a_command_that_leaves_a_process_running_succeeds_when_it_exits(
        tmp_path: Path) -> None:
    """An alert script that starts its sender in the background (`... &`) and exits 0 used to
    time out (the background process held the output pipes open), so a delivered
    notification was failed and sent again, up to 8 times."""
    done = tmp_path / "done"
    script = f"(sleep 30 &); echo sent > {done}"
    sent = channels.send(Channel("command", ("sh", "-c", script), timeout=5.0),
                         {"event": "test"})
    assert (sent.ok, sent.status, sent.error) == (True, 0, None)
    assert done.read_text() == "sent\n"


def test_apprise_delivers_through_a_service_url() -> None:
    pytest.importorskip("apprise")
    hook = start_hook()
    try:
        url = hook.url.replace("http://", "json://")  # Apprise's generic JSON service
        sent = channels.send(Channel("apprise", (url,)), {
            "event": "run_failed", "delivery": "d1", "job": "nightly",
            "run": {"id": 3, "state": "failed"}, "error": "boom"})
        assert sent.ok, sent.error
        [got] = hook.received
        assert got.json["title"] == "[taskplan] nightly run 3 failed"
        assert "Error: boom" in got.json["message"]
    finally:
        hook.close()
    unknown = channels.send(Channel("apprise", ("nosuchservice://x",)), {"event": "test"})
    assert not unknown.ok and not unknown.retry
    assert unknown.error == "Apprise does not understand this URL"


def test_apprise_says_why_it_could_not_deliver() -> None:
    """Apprise gives its reason only in its log, which `notify test` and `notifications` never
    show: the error used to be 'Apprise could not deliver (see the sender's log)', with nothing
    in any log where logging shows errors only."""
    pytest.importorskip("apprise")
    logging.getLogger("apprise").setLevel(logging.ERROR)  # as a quiet daemon's logging may
    try:
        sent = channels.send(Channel("apprise", ("json://user:pw@127.0.0.1:9/x",)),
                             {"event": "test"})
        assert logging.getLogger("apprise").level == logging.ERROR  # put back
    finally:
        logging.getLogger("apprise").setLevel(logging.NOTSET)
    assert not sent.ok and sent.retry
    assert sent.error == ("Apprise could not deliver: A Connection error occurred sending JSON"
                          " notification to 127.0.0.1."), sent.error


def test_apprise_without_its_extra_gives_up_at_once_with_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # as if not installed
    sent = channels.send(Channel("apprise", ("json://127.0.0.1:9/",)), {"event": "test"})
    assert not sent.ok and not sent.retry
    assert sent.error == ("the apprise channel needs the optional extra:"
                          " pip install 'taskplan[apprise]'")


def test_a_webhook_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = start_hook()
    try:
        channel = Channel("webhook", (hook.url,), secret="${HOOK_SECRET}")
        missing = channels.send(channel, {"event": "test", "delivery": "d"})
        assert missing.error == "environment variable HOOK_SECRET is not set"
        monkeypatch.setenv("HOOK_SECRET", "from-env")
        assert channels.send(channel, {"event": "test", "delivery": "d"}).ok
        [got] = hook.received
        assert got.headers["X-Taskplan-Signature"] == channels.sign("from-env", got.body)
    finally:
        hook.close()
