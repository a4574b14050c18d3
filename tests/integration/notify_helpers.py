"""A real HTTP receiver on 127.0.0.1 for webhook tests: records every request, can answer
with chosen statuses, and can hold requests open until released."""

from __future__ import annotations

import http.server
import json
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Hook:
    """The receiver's state, shared with its handler threads."""

    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200
    hold: threading.Event | None = None  # set: answer held requests
    received: list[Received] = field(default_factory=list)
    open_requests: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    server: http.server.ThreadingHTTPServer | None = None

    def events(self) -> list[str]:
        with self.lock:
            return [r.json["event"] for r in self.received]

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def start_hook(statuses: list[int] | None = None, hold: bool = False) -> Hook:
    hook = Hook(statuses=list(statuses or []), hold=threading.Event() if hold else None)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with hook.lock:
                hook.received.append(Received(self.path, dict(self.headers.items()), body))
                hook.open_requests += 1
                status = hook.statuses.pop(0) if hook.statuses else 200
            hook.arrived.set()
            try:
                if hook.hold is not None:
                    hook.hold.wait(60)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the sender went away
            finally:
                with hook.lock:
                    hook.open_requests -= 1

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    hook.server = server
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return hook
