"""The syslog listener: UDP, TCP and TLS on one asyncio loop, feeding a bounded queue.

Memory is bounded: at most ``queue_lines`` messages wait, each at most ``max_message_bytes``, and at
most ``max_connections`` TCP peers are served. When the queue is full, TCP readers stop reading, so
the kernel's window closes and senders slow down (back-pressure); UDP has no way to push back, so when
the queue is full the listener stops reading the UDP socket and lets the kernel's receive buffer (raised
to ``udp_receive_buffer``) absorb the burst; what overflows that buffer is dropped by the kernel and counted
(``udp_kernel_dropped``, read from /proc/net/udp), never silently. Batches are handed to ``handle`` (which
stores them, blocking) on worker threads, ``store_batches`` at a time, so one batch is parsed while the
one before it commits, or on worker processes (``executor``: the GIL keeps threads to one core, and parsing
and writing are most of a line's CPU; a pool whose worker died is replaced). A batch that fails is retried
until it succeeds, holding the queue, so an outage of the database or the bus slows senders down instead of
losing lines. A batch that keeps failing for any other reason than the store being unavailable (a parser or
validation bug that one line trips) is split in halves, each retried on its own, so one line never holds back
the lines that arrived with it; a single line that still fails goes to ``fallback`` (the ingestor stores
it as a raw ``syslog_message`` with the reason), and only if that fails too is it logged and counted
as ``unstorable``. A store worker process that dies is not the store being unavailable for ever: a batch in
flight at ``split_after_failures`` deaths is split the same way, so a line that kills whatever worker parses
it (a crash, memory) is isolated and kept raw instead of stalling the listener, and a line that kills the
fallback too is logged and counted as ``unstorable``. A batch merely in flight beside it may be split too (or,
rarely, a line of it kept raw): nothing is lost, the retries cost time.

Counting identical lines (see ``events``) takes one listener-wide table of digests, bounded by
``occurrence_entries`` whatever the number of peers and connections; an idle TCP connection is closed
after ``idle_timeout`` so it does not hold one of the ``max_connections`` slots.

Stopping drains, it does not cut: new connections are refused, open ones are read on for up to
``drain_seconds`` or until each is quiet (a sender that finishes in that time has every line it sent
stored; a relay that keeps its connection open but idle does not hold the stop), then each remaining
connection stops reading and its task queues what it had already read, up to its last complete line, before
it ends (no cancellation, which asyncio's ``wait_for`` in Python 3.11 can swallow). Only then is the queue
closed and drained through the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg_pool import PoolTimeout

from ingest.errors import Unavailable
from ingest.stopsignals import stop_on_signals
from ingest.syslog.events import Occurrences
from ingest.syslog.framing import FrameDecoder
from ingest.syslog.pools import release_broken
from storage.errors import DatabaseDown, DatabaseUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    """A message as it arrived: fixed at receipt, so a retried batch yields the very same events."""

    line: str
    peer: str | None
    occurrence: int
    received_at: datetime

    def __reduce__(self) -> tuple:
        # Batches cross to store worker processes: the fields as a tuple pickle in a third of the time of a slots
        # dataclass's generic state (which looks up its fields for every object).
        return (Received, (self.line, self.peer, self.occurrence, self.received_at))


class StoreFailed(Exception):
    """A store attempt in another process failed, carried back in a form that always pickles: the original
    exception's class name (``kind``), its message, and whether the store was only unavailable (retried as such)."""

    def __init__(self, kind: str, message: str, transient: bool) -> None:
        super().__init__(kind, message, transient)
        self.kind, self.message, self.transient = kind, message, transient

    def __str__(self) -> str:
        return self.message

    @classmethod
    def of(cls, exc: BaseException) -> StoreFailed:
        if isinstance(exc, StoreFailed):
            return exc
        return cls(exc.__class__.__name__, str(exc), is_transient(exc))


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    udp_port: int | None = 5514  # None: off; 0: any free port (tests)
    tcp_port: int | None = 5514
    tls_port: int | None = None
    ssl_context: ssl.SSLContext | None = None
    max_message_bytes: int = 16 * 1024
    queue_lines: int = 4096
    max_connections: int = 1000
    batch_lines: int = 2000
    idle_timeout: float = 300.0
    occurrence_entries: int = 100_000
    split_after_failures: int = 3  # a batch failing this many times in a row is split in halves
    store_batches: int = 2  # batches stored at once: parsing the next overlaps the commit of the last
    udp_receive_buffer: int = 8 * 1024 * 1024  # bytes asked of the kernel (capped at net.core.rmem_max)
    drain_seconds: float = 2.0  # on stop, open TCP connections are read on this long (a closing sender finishes)


@dataclass
class ListenerStats:
    received: int = 0
    handled: int = 0
    dropped: int = 0  # UDP datagrams that found the queue full (0 while the socket can be paused instead)
    udp_kernel_dropped: int = 0  # UDP datagrams the kernel dropped (receive buffer full), from /proc/net/udp
    oversized: int = 0
    refused_connections: int = 0
    failed_batches: int = 0
    split_batches: int = 0  # batches split to isolate a line that could not be stored
    fallback_lines: int = 0  # lines stored through the fallback (raw, with the reason)
    unstorable: int = 0  # lines that neither the handler nor the fallback could store (logged)
    cut_partial_lines: int = 0  # a connection still sending at shutdown: its unfinished last line (logged)
    executors_replaced: int = 0  # store worker pools replaced because a worker died (killed, out of memory)
    ports: dict[str, int] = field(default_factory=dict)


QUIET_SECONDS = 0.2  # a connection that has waited this long for data is not in the middle of sending


def utcnow() -> datetime:
    return datetime.now(UTC)


class SyslogListener:
    def __init__(self, config: ListenerConfig, handle: Callable[[list[Received]], object], *,
                 fallback: Callable[[list[Received], BaseException], object] | None = None,
                 now: Callable[[], datetime] = utcnow, retry_delay: float = 1.0,
                 executor: Callable[[], Executor] | None = None,
                 stored: Callable[[object], None] | None = None) -> None:
        """``handle(batch)`` stores a batch (blocking) and ``fallback(batch, reason)`` stores lines it could
        not, raw. They run on ``executor()``'s workers: by default ``store_batches`` threads of this process.
        Given a process pool instead, they must be picklable module functions; a pool whose worker died is
        replaced and the batch retried. ``stored`` is called on the loop with what each call returned."""
        self.config = config
        self._handle = handle
        self._fallback = fallback
        self._stored = stored
        self._now = now
        self._retry_delay = retry_delay
        self.stats = ListenerStats()
        self._queue: asyncio.Queue[Received | None] | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._connections: set[asyncio.Task] = set()
        self._writers: dict[asyncio.Task, asyncio.StreamWriter] = {}  # open TCP connections
        self._cut: set[asyncio.Task] = set()  # connections told to stop reading by ``stop``
        self._waiting_since: dict[asyncio.Task, float] = {}  # connections waiting for data, since (loop time)
        self._refusing = False  # set by ``stop`` once the connections are drained
        self._consumer: asyncio.Task | None = None
        self._new_executor = executor or (lambda: ThreadPoolExecutor(max(1, config.store_batches),
                                                                     thread_name_prefix="syslog-store"))
        self._executor = self._new_executor()
        self._storing: set[asyncio.Task] = set()
        self._udp_paused = False
        self._udp_held: list[Received] = []  # the datagram that found the queue full, kept while paused
        self._udp_inode: int | None = None
        self._occurrences = Occurrences(config.occurrence_entries)
        self._sessions = itertools.count()
        self.listening = False  # every configured port bound, and not stopping (the process's /readyz)

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> dict[str, int]:
        """Bind every configured port; returns {"udp"|"tcp"|"tls": port} (useful with port 0)."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        self._queue = asyncio.Queue(cfg.queue_lines)
        self._consumer = loop.create_task(self._consume())
        if cfg.udp_port is not None:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(cfg.host, cfg.udp_port))
            self._udp = transport
            self.stats.ports["udp"] = transport.get_extra_info("sockname")[1]
            self._udp_inode = _raise_receive_buffer(transport.get_extra_info("socket"), cfg.udp_receive_buffer)
        if cfg.tcp_port is not None:
            server = await asyncio.start_server(self._on_tcp, cfg.host, cfg.tcp_port, limit=cfg.max_message_bytes * 2)
            self._servers.append(server)
            self.stats.ports["tcp"] = server.sockets[0].getsockname()[1]
        if cfg.tls_port is not None:
            if cfg.ssl_context is None:
                raise ValueError("a TLS port needs an SSL context (syslog_tls_cert and syslog_tls_key)")
            server = await asyncio.start_server(self._on_tcp, cfg.host, cfg.tls_port, ssl=cfg.ssl_context,
                                                ssl_handshake_timeout=10, limit=cfg.max_message_bytes * 2)
            self._servers.append(server)
            self.stats.ports["tls"] = server.sockets[0].getsockname()[1]
        self.listening = True
        return dict(self.stats.ports)

    def not_listening(self) -> str | None:
        """A readiness probe: None once every port is bound, until stopping; else what is wrong. The ops port
        comes up first, and a sender told "ready" before the UDP socket was bound lost its datagrams."""
        return None if self.listening else "the syslog ports are not bound yet, or the listener is stopping"

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, let open connections' received data in (see the module doc), then store what is
        queued."""
        self.listening = False
        for server in self._servers:
            server.close()
        if self._udp is not None:
            self._udp.close()
        loop = asyncio.get_running_loop()
        began = loop.time()
        # Until every sender is done or quiet; at least QUIET_SECONDS, so that a connection accepted just before
        # the stop, whose task has not started yet, is drained too.
        while loop.time() < began + self.config.drain_seconds:
            now = loop.time()
            if now - began >= QUIET_SECONDS and all(
                    now - self._waiting_since.get(task, now) >= QUIET_SECONDS for task in self._connections):
                break
            await asyncio.sleep(0.05)
        self._refusing = True  # a connection whose task starts from now on is closed unread (see _on_tcp)
        for task in list(self._connections):
            self._cut.add(task)
            # Stop reading now (TLS too, with no close_notify wait): the reader keeps what it holds, then ends.
            self._writers[task].transport.abort()
        if self._connections:
            _, stuck = await asyncio.wait(set(self._connections), timeout=5)
            for task in stuck:  # blocked past 5 s with the consumer running: should not happen; do not wait on
                log.error("syslog: a connection did not finish queuing its lines within 5 s of shutdown")
                task.cancel()
        if self._queue is not None and self._consumer is not None:
            self._resume_udp()
            await self._queue.put(None)
            try:
                await asyncio.wait_for(self._consumer, timeout)
            except TimeoutError:
                log.error("syslog: %d queued lines were not stored before shutdown", self._queue.qsize())
        if self._storing:
            await asyncio.wait(self._storing, timeout=timeout)
        self.refresh_kernel_drops()
        self._executor.shutdown(wait=True)

    def refresh_kernel_drops(self) -> int:
        """Read the kernel's drop count for the UDP socket into ``stats`` (Linux; 0 elsewhere)."""
        if self._udp_inode is not None:
            self.stats.udp_kernel_dropped = _kernel_drops(self._udp_inode)
        return self.stats.udp_kernel_dropped

    # -- receiving -----------------------------------------------------------------------------------

    def _received(self, line: bytes, peer: str | None, session: str) -> Received:
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        self.stats.received += 1
        return Received(text, peer, self._occurrences.next(text, session), self._now())

    def datagram(self, data: bytes, peer: str) -> None:
        assert self._queue is not None
        if len(data) > self.config.max_message_bytes:
            self.stats.oversized += 1
            data = data[:self.config.max_message_bytes]
        data = data.rstrip(b"\r\n\x00")
        if not data:
            return
        if self._queue.full():
            if self._udp is None or self._udp_held:
                self.stats.dropped += 1
                return
            # Stop reading: the kernel's buffer holds the next datagrams until the queue has room again.
            self._udp_held.append(self._received(data, peer, f"udp/{peer}"))
            self._udp.pause_reading()
            self._udp_paused = True
            return
        self._queue.put_nowait(self._received(data, peer, f"udp/{peer}"))

    def _resume_udp(self) -> None:
        """Called as the consumer takes lines: read the UDP socket again once the queue is half empty."""
        if not self._udp_paused or self._queue is None or self._queue.qsize() > self._queue.maxsize // 2:
            return
        for item in self._udp_held:
            self._queue.put_nowait(item)
        self._udp_held.clear()
        self._udp_paused = False
        if self._udp is not None and not self._udp.is_closing():
            self._udp.resume_reading()

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._refusing:  # accepted as the listener stopped, after the drain: the queue will not take its lines
            self.stats.refused_connections += 1
            log.warning("syslog: a connection from %s arrived as the listener stopped; closed unread",
                        (writer.get_extra_info("peername") or ("?",))[0])
            writer.transport.abort()
            return
        if len(self._connections) >= self.config.max_connections:
            self.stats.refused_connections += 1
            writer.close()
            return
        assert task is not None and self._queue is not None
        self._connections.add(task)
        self._writers[task] = writer
        peername = writer.get_extra_info("peername")
        peer = peername[0] if peername else None
        decoder = FrameDecoder(self.config.max_message_bytes)
        session = f"tcp/{peer}/{next(self._sessions)}"  # a reconnecting relay starts counting afresh
        try:
            while True:
                self._waiting_since[task] = asyncio.get_running_loop().time()
                data = await asyncio.wait_for(reader.read(65536), self.config.idle_timeout)
                self._waiting_since.pop(task, None)  # reading or queuing: not quiet
                if not data:
                    break
                for frame in decoder.feed(data):
                    await self._queue.put(self._received(frame, peer, session))  # waits when full: back-pressure
            last = decoder.close()
            if task in self._cut and last:
                # Cut by the shutdown, not ended by the sender: an unfinished line would be stored truncated.
                self.stats.cut_partial_lines += len(last)
                log.warning("syslog: shutdown cut the connection from %s in the middle of a line; the %d bytes "
                            "received of it were not stored", peer, sum(len(f) for f in last))
            else:
                for frame in last:
                    await self._queue.put(self._received(frame, peer, session))
        except (TimeoutError, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.info("syslog: connection from %s ended: %s", peer, exc.__class__.__name__)
        finally:
            self.stats.oversized += decoder.oversized
            self._connections.discard(task)
            self._writers.pop(task, None)
            self._cut.discard(task)
            self._waiting_since.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5)

    # -- storing ---------------------------------------------------------------------------------------

    async def _consume(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(max(1, self.config.store_batches))
        stopping = False
        while not stopping:
            await slots.acquire()  # a free slot first: at most store_batches batches are off the queue
            first = await self._queue.get()
            if first is None:
                slots.release()
                break
            batch = [first]
            while len(batch) < self.config.batch_lines:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._resume_udp()
            task = loop.create_task(self._store_in_slot(loop, batch, slots))
            self._storing.add(task)
            task.add_done_callback(self._storing.discard)
        if self._storing:
            await asyncio.wait(set(self._storing))

    async def _store_in_slot(self, loop: asyncio.AbstractEventLoop, batch: list[Received],
                             slots: asyncio.Semaphore) -> None:
        try:
            await self._store(loop, batch)
        finally:
            slots.release()

    async def _store(self, loop: asyncio.AbstractEventLoop, batch: list[Received]) -> None:
        """Store ``batch``, retrying with back-off while the store is unavailable (see the module doc)."""
        delay = self._retry_delay
        failures = 0
        deaths = 0  # store worker deaths while this batch was in flight (transient each, but not for ever)
        while True:
            try:
                await self._run(loop, self._handle, batch)
                self.stats.handled += len(batch)
                return
            except Exception as exc:  # noqa: BLE001 - keep the lines and retry: dropping them would lose events
                self.stats.failed_batches += 1
                failures = 0 if is_transient(exc) else failures + 1
                deaths += isinstance(exc, BrokenExecutor)
                if failures >= self.config.split_after_failures or deaths >= self.config.split_after_failures:
                    if len(batch) > 1:
                        log.error("syslog: storing %d lines failed %d times (%s: %s); storing each half on its own",
                                  len(batch), max(failures, deaths), exc.__class__.__name__, exc)
                        self.stats.split_batches += 1
                        middle = len(batch) // 2
                        await self._store(loop, batch[:middle])
                        await self._store(loop, batch[middle:])
                        return
                    await self._store_fallback(loop, batch, exc)
                    return
                log.error("syslog: storing %d lines failed (%s: %s); retrying in %.0f s",
                          len(batch), exc.__class__.__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = _next_delay(delay, exc)

    async def _run(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: object) -> None:
        """``fn(*args)`` on the executor; what it returns goes to ``stored``. A worker process that died (killed,
        out of memory) breaks its pool: the pool is replaced once, and the batch fails as transient (retried)."""
        executor = self._executor
        try:
            result = await loop.run_in_executor(executor, fn, *args)
        except BrokenExecutor as exc:
            if self._executor is executor:
                self.stats.executors_replaced += 1
                log.error("syslog: a store worker died (%s); starting new ones and retrying its batches (%d "
                          "time(s) since start; a worker that cannot start logs its own error above)", exc,
                          self.stats.executors_replaced)
                self._executor = self._new_executor()
                release_broken(executor)  # else, on Python < 3.11.5, it never finishes shutting down (gh-94777)
                executor.shutdown(wait=False)
            raise
        if self._stored is not None:
            self._stored(result)

    async def _store_fallback(self, loop: asyncio.AbstractEventLoop, batch: list[Received],
                              reason: BaseException) -> None:
        """One line the handler cannot store: through ``fallback`` (retried while the store is down)."""
        delay = self._retry_delay
        deaths = 0
        while self._fallback is not None:
            try:
                await self._run(loop, self._fallback, batch, reason)
                self.stats.handled += len(batch)
                self.stats.fallback_lines += len(batch)
                return
            except Exception as exc:  # noqa: BLE001 - judged below: retried while transient, else logged
                deaths += isinstance(exc, BrokenExecutor)
                if not is_transient(exc) or deaths >= self.config.split_after_failures:
                    reason = exc
                    break
                await asyncio.sleep(delay)
                delay = _next_delay(delay, exc)
        self.stats.unstorable += len(batch)
        for item in batch:
            log.critical("syslog: a line from %s could not be stored (%s: %s): %r", item.peer,
                         reason.__class__.__name__, reason, item.line[:1024])


def _raise_receive_buffer(sock, size: int) -> int | None:
    """Ask for a larger UDP receive buffer (a burst waits there while the queue is full); returns the socket's
    inode, by which /proc/net/udp reports the kernel's drops."""
    import os
    import socket

    if sock is None:
        return None
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):  # FORCE needs CAP_NET_ADMIN
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            break
        except OSError:
            continue
    try:
        return os.fstat(sock.fileno()).st_ino
    except (OSError, ValueError):
        return None


def _kernel_drops(inode: int) -> int:
    """The ``drops`` column of /proc/net/udp{,6} for the socket with this inode (0 when not found)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    fields = row.split()
                    if len(fields) >= 13 and fields[9] == str(inode):
                        return int(fields[12])
        except OSError:
            continue
    return 0


def _next_delay(delay: float, exc: BaseException) -> float:
    """Back off up to 30 s, but only to 1 s while the pool reports the database down: that refusal costs
    nothing (the pool's own probe watches for its return), and the lines are stored within a second of it."""
    down = isinstance(exc, DatabaseDown) or (isinstance(exc, StoreFailed) and exc.kind == DatabaseDown.__name__)
    return min(delay * 2, 1.0 if down else 30.0)


def is_transient(exc: BaseException) -> bool:
    """True when the store is unavailable (retry the same lines), False when the lines themselves fail. A store
    worker process that died is transient: its batch is retried on a new one."""
    if isinstance(exc, StoreFailed):
        return exc.transient
    if isinstance(exc, BrokenExecutor):
        return True
    return isinstance(exc, (OSError, Unavailable, DatabaseUnavailable, psycopg.OperationalError, PoolTimeout))


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, listener: SyslogListener) -> None:
        self._listener = listener

    def datagram_received(self, data: bytes, addr) -> None:
        self._listener.datagram(data, addr[0])

    def error_received(self, exc: Exception) -> None:
        log.warning("syslog: UDP error %s", exc)


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS for syslog over TCP (RFC 5425), TLS 1.2 or newer."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def run_forever(listener: SyslogListener, *, report: Callable[[ListenerStats], None] | None = None,
                every: float = 10.0, stop: asyncio.Event | None = None) -> None:
    """Run the listener until SIGINT/SIGTERM (or ``stop``), calling ``report`` every few seconds."""
    async def main() -> None:
        done = stop or asyncio.Event()
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            stop_on_signals(done)
        await listener.start()
        if report:
            report(listener.stats)
        last = time.monotonic()
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 1.0)
            if report and time.monotonic() - last >= every:
                listener.refresh_kernel_drops()
                report(listener.stats)
                last = time.monotonic()
        await listener.stop()
        if report:
            report(listener.stats)

    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main())
    finally:
        _close(loop)
        asyncio.set_event_loop(None)


def _close(loop: asyncio.AbstractEventLoop, timeout: float = 10.0) -> None:
    """``asyncio.run``'s clean-up, bounded: what is still pending once the listener has stopped (and stored what
    it received) is cancelled and given ``timeout`` seconds. A task that outlives that is logged with where it
    waits, and the process exits anyway; ``asyncio.run`` waited for it for ever (a CI run stuck 29 minutes after a
    SIGTERM that followed a store worker's death)."""
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            _, stuck = loop.run_until_complete(asyncio.wait(pending, timeout=timeout))
            for task in stuck:
                where = io.StringIO()
                task.print_stack(limit=5, file=where)
                log.error("syslog: a task did not stop within %.0f s of shutdown, left behind: %s",
                          timeout, where.getvalue())
        loop.run_until_complete(loop.shutdown_asyncgens())
        with contextlib.suppress(TimeoutError):
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), timeout))
    finally:
        loop.close()
