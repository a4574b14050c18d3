"""Text files that must be UTF-8 (job files, taskplan.toml): where the first byte that is not
is, as a line and column a person can go to, rather than Python's offset into the bytes."""

from __future__ import annotations


class NotUtf8(ValueError):
    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message


def decode(raw: bytes) -> str:
    """The text of `raw`; NotUtf8 at the line and column (1-based, in characters) of its first
    byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, start) + 1
        # Everything before the first bad byte decodes: its characters give the column.
        col = len(raw[start:exc.start].decode("utf-8")) + 1
        bad = raw[exc.start]
        raise NotUtf8(line, col, f"not UTF-8 text (byte 0x{bad:02x}: {exc.reason}; "
                      "save the file as UTF-8)") from None
