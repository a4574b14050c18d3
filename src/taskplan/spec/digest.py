"""The digest that tells a stored definition from a changed one (apply stores a new version
only when it differs). Apart from the parser: `apply` of a parsed file needs only this."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def definition_hash(definition: dict[str, Any]) -> str:
    """sha256 of the canonical JSON form: sorted keys, no spaces, UTF-8."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
