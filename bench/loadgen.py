"""A small open-loop HTTP/1.1 load generator (asyncio, keep-alive connections).

Request k is due at ``start + k / rate``; its latency is measured from when it was due,
not from when a connection was free, so a server that falls behind shows its queueing
(no coordinated omission). Much cheaper per request than a requests-based client, which
matters when client, server and database share two cores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import urlsplit


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _run(base: str, path: str, headers: dict[str, str], body_of: Callable[[int], bytes], rate: float,
               total: int, connections: int) -> tuple[list[float], dict[int, int]]:
    parts = urlsplit(base)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while (item := await queue.get()) is not None:
                k, due = item
                body = body_of(k)
                writer.write(f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                status = await _read_response(reader)
                latencies.append((time.perf_counter() - due) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    start = time.perf_counter() + 0.2
    for k in range(total):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((k, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return latencies, statuses


def open_loop(base: str, path: str, headers: dict[str, str], body_of: Callable[[int], bytes], *, rate: float,
              seconds: float, connections: int = 64) -> tuple[list[float], dict[int, int]]:
    """Latencies in ms (from each request's due time) and a count per HTTP status."""
    return asyncio.run(_run(base, path, headers, body_of, rate, int(rate * seconds), connections))
