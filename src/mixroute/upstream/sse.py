"""Server-sent events framing, parsed on bytes.

Lines are split on ``b"\\n"`` and decoded only when complete, so a multi-byte
UTF-8 character that the network split across two reads is decoded whole.
"""

from __future__ import annotations

Event = tuple[str | None, str]


class SSEDecoder:
    """Feed it raw body bytes; it returns each complete ``(event, data)``."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by ``chunk`` (possibly none)."""
        if self._buffer:
            chunk = self._buffer + chunk
        events: list[Event] = []
        if self._data or self._event is not None or b"\r" in chunk:
            lines = chunk.split(b"\n")
            self._buffer = lines.pop()
            for raw in lines:
                self._line(raw, events)
            return events
        # Between events, without carriage returns: whole events at a time.
        # The usual one (a single ``data:`` line, as OpenAI-compatible servers
        # send) is taken as it is; any other goes through the line parser.
        blocks = chunk.split(b"\n\n")
        self._buffer = blocks.pop()
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                events.append((None, block[6:].decode("utf-8", "replace")))
                continue
            for raw in block.split(b"\n"):
                self._line(raw, events)
            self._line(b"", events)
        return events

    def flush(self) -> list[Event]:
        """Events left when the body ended without a final blank line."""
        events: list[Event] = []
        if self._buffer:
            # Between events the buffer can hold several whole lines.
            for raw in self._buffer.split(b"\n"):
                self._line(raw, events)
            self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[Event]) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw:
            if self._data:
                events.append((self._event, "\n".join(self._data)))
            self._event = None
            self._data = []
            return
        line = raw.decode("utf-8", "replace")
        name, sep, value = line.partition(":")
        if not sep or not name:
            # A field with no colon has an empty value; a leading colon is a comment.
            if not name:
                return
            value = ""
        elif value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
