"""Text from the wire made safe for a terminal.

A DHCP hostname, an SNI or a DNS name is whatever a device on the network chose to send: an
escape sequence in one can clear the screen, move the cursor and print a fake verdict over the
real one, and a bidirectional-override character can make text read backwards. Everything that
`analyze`, `diff` and the other commands print goes through `printable` (or a `SafeWriter`), which
spells out every control and invisible formatting character as a `\\x..`/`\\u....` escape.
A value printed within a line goes through `inline`, which spells out the newline too: a name
holding one could otherwise start a line of its own, such as a fake verdict. Log lines go through
`SafeFormatter`.
"""

from __future__ import annotations

import logging
import re
from typing import TextIO

_UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb]"
)
"""C0 controls but the newline, DEL, C1 controls (CSI 0x9b among them), and the invisible
format characters: soft hyphen, bidirectional marks, overrides and isolates, zero-width and
word-joiner characters, line and paragraph separators, the byte-order mark and the interlinear
annotation characters."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control and invisible format character but the newline escaped."""
    return _UNSAFE.sub(_escape, text)


def inline(text: str) -> str:
    """`text` as `printable` makes it, with the newline escaped as well: one value within a line
    (a name, a message, a path) that cannot begin a line of its own."""
    return printable(text).replace("\n", "\\x0a")


class SafeFormatter(logging.Formatter):
    """A log formatter whose message (the text of the record, with its arguments) is `inline`:
    a log line quoting wire data stays one line of plain text. Tracebacks stay as they are."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return inline(super().formatMessage(record))


class SafeWriter:
    """A text stream that writes everything through `printable`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(printable(text))

    def flush(self) -> None:
        self.stream.flush()
