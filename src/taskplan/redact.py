"""Keeping secrets out of text that people see: logs, errors, CLI output.

A neutral module with no dependencies, so that every layer (store, executors, CLI) can mask
connection URLs without importing one another.
"""

from __future__ import annotations

import re

# A scheme is at most 32 characters here: unbounded, every letter of a long run of them (a
# line of base64, a DNA sequence) started a scan to the run's end, and a 40 kB line took
# seconds (a megabyte, the hour). The text before a match is kept as is, so a longer scheme
# is masked all the same.
_PASSWORD = re.compile(
    r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]{0,31}://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<at>@)")
# A password given as a query parameter of a URL (`?password=...`, which drivers honour).
_QUERY_PASSWORD = re.compile(
    r"(?P<head>://\S*?[?&](?:password|passwd|pwd)=)(?P<pw>[^&#\s'\"]*)", re.IGNORECASE)


# Secret values this process resolved (`${file:...}`, a password from the environment): shown
# as *** wherever they appear, e.g. in a driver's error message that quotes them.
_SECRETS: set[str] = set()
_MIN_SECRET = 4  # shorter values would mask ordinary words


def remember_secret(value: str) -> None:
    if len(value) >= _MIN_SECRET:
        _SECRETS.add(value)


def mask_url(text: str) -> str:
    """Replace the password of every URL inside `text`, and every remembered secret, with
    ***."""
    text = _PASSWORD.sub(lambda m: f"{m['head']}***{m['at']}", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m['head']}***", text)
    for secret in tuple(_SECRETS):
        if secret in text:
            text = text.replace(secret, "***")
    return text
