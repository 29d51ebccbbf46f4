"""TCP syslog framing (RFC 6587): octet-counting (``123 <msg>``) and newline-terminated, per frame.

Sans-IO: bytes in, whole messages out, so the listener and the tests share it. Memory is bounded by
``max_bytes``: a frame that announces or grows past it is skipped to its end and counted, and the
stream stays in step for the next frame.
"""

from __future__ import annotations

import re

_OCTETS = re.compile(rb"([1-9][0-9]{0,9}) ")


class FrameDecoder:
    def __init__(self, max_bytes: int = 16 * 1024) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._skip = 0  # bytes of an oversized octet-counted frame still to discard
        self._skip_line = False  # discarding an oversized newline-framed frame up to its newline
        self.oversized = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Append received bytes; returns the messages they complete."""
        self._buffer += data
        out: list[bytes] = []
        while self._buffer:
            if self._skip:
                n = min(self._skip, len(self._buffer))
                del self._buffer[:n]
                self._skip -= n
                continue
            if self._skip_line:
                end = self._buffer.find(b"\n")
                if end < 0:
                    self._buffer.clear()
                    break
                del self._buffer[:end + 1]
                self._skip_line = False
                continue
            octets = _OCTETS.match(self._buffer)
            if octets is not None:
                length = int(octets.group(1))
                start = octets.end()
                if length > self.max_bytes:
                    self.oversized += 1
                    del self._buffer[:start]
                    self._skip = length
                    continue
                if len(self._buffer) - start < length:
                    break
                frame = bytes(self._buffer[start:start + length])
                del self._buffer[:start + length]
                out.append(frame.rstrip(b"\r\n\x00"))
                continue
            if len(self._buffer) < 11 and bytes(self._buffer).isdigit():
                break  # maybe an octet count still arriving
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_bytes:
                    self.oversized += 1
                    self._buffer.clear()
                    self._skip_line = True
                break
            if end > self.max_bytes:
                self.oversized += 1
                del self._buffer[:end + 1]
                continue
            frame = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            frame = frame.rstrip(b"\r\x00")
            if frame:
                out.append(frame)
        return out

    def close(self) -> list[bytes]:
        """The last frame of a stream that ended without its newline."""
        rest = bytes(self._buffer).rstrip(b"\r\n\x00")
        self._buffer.clear()
        if rest and not self._skip and not self._skip_line and len(rest) <= self.max_bytes:
            return [rest]
        return []
