"""Keeping secrets out of text that people see: logs, errors, CLI output.

A neutral module with no dependencies, so that every layer (store, executors, CLI) can mask
connection URLs without importing one another.
"""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<at>@)")


def mask_url(text: str) -> str:
    """Replace the password of every URL inside `text` with ***."""
    return _PASSWORD.sub(lambda m: f"{m['head']}***{m['at']}", text)
