"""Who may use the console: an optional bearer token, the login cookie, and CSRF.

Without a token (loopback only) anyone who can reach the port may act. With a token every API
call needs it (`Authorization: Bearer T`) or the session cookie the login page sets (HttpOnly,
SameSite=Strict). A state-changing request sent by a browser (it carries an Origin, a
Sec-Fetch-Site or a cookie) must also carry the page's CSRF token in `X-CSRF-Token`: a forged
cross-site form cannot set that header, and cross-origin scripts cannot read the token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from pathlib import Path

from taskplan.dataclass import dataclass
from taskplan.errors import UsageError

COOKIE = "taskplan_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"  # the same token in a plain form's body (the log out form)


def is_loopback(host: str) -> bool:
    """`host` (a name or an address) is this machine's own; host names have no case."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"--token-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--token-file {path}: not a text file") from None
    if not token:
        raise UsageError(f"--token-file {path}: the file is empty")
    if len(token) < 8 or any(c.isspace() for c in token):
        raise UsageError(f"--token-file {path}: the token must be at least 8 characters"
                         " with no spaces")
    return token


def check_bind(host: str, token: str | None) -> None:
    if token is None and not is_loopback(host):
        raise UsageError(f"--host {host} is not a loopback address: refusing to serve without"
                         " a token (give --token-file FILE)")


@dataclass(frozen=True)
class Auth:
    token: str | None
    session: str  # the cookie value: derived from the token, never the token itself
    csrf: str

    @classmethod
    def create(cls, token: str | None) -> Auth:
        secret = (token or secrets.token_hex(32)).encode()
        return cls(token, _mac(secret, "session"), _mac(secret, "csrf"))

    @property
    def required(self) -> bool:
        return self.token is not None

    def bearer_ok(self, header: str | None) -> bool:
        if self.token is None or not header:
            return False
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                                  self.token.encode())

    def cookie_ok(self, value: str | None) -> bool:
        return self.token is not None and value is not None and hmac.compare_digest(
            value.encode(), self.session.encode())

    def login_ok(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.strip().encode(),
                                                              self.token.encode())

    def csrf_ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.csrf.encode())


def _mac(secret: bytes, purpose: str) -> str:
    return hmac.new(secret, purpose.encode(), hashlib.sha256).hexdigest()
