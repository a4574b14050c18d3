"""Text from tasks made harmless for the operator's terminal.

Task output, errors, results and items are written by whatever a task ran. Escape sequences in
them (`ESC ] 0 ; title BEL`, `ESC [ 2 J`, a carriage return that overwrites the line with a fake
prompt, bidirectional overrides that reorder what is shown) would act on the terminal of
whoever reads them. Shown text keeps newlines and tabs; every other control character is
printed as a visible escape (`\\x1b`, `\\r`, `\\u202e`). `logs --raw` skips this for piping.
"""

from __future__ import annotations

_NAMED = {"\r": "\\r", "\b": "\\b", "\f": "\\f", "\v": "\\v", "\a": "\\a"}

# C0 controls but newline and tab, DEL, C1 controls, and the bidirectional embeddings,
# overrides and isolates.
_CONTROLS = ([c for c in range(0x20) if chr(c) not in "\n\t"] + list(range(0x7F, 0xA0))
             + list(range(0x202A, 0x202F)) + list(range(0x2066, 0x206A)))
_TABLE = {c: _NAMED.get(chr(c), f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")
          for c in _CONTROLS}


def safe(text: str) -> str:
    """`text` with control characters shown as escapes; a CRLF line end stays a line end."""
    return text.replace("\r\n", "\n").translate(_TABLE)


def safe_line(text: str) -> str:
    """One line of a table: newlines and tabs escaped too, so a row stays one row."""
    return safe(text).replace("\n", "\\n").replace("\t", "\\t")
