"""The durable bus: NATS JetStream between the nodes that accept events and the writers that store them.

Publishers (API and syslog nodes) hand the pipeline's finished records (validated, redacted, enriched)
to JetStream and return only when JetStream has acknowledged every one of them, so an event the client
was told about is on disk in the stream. A message holds one encoded record per line, up to
``message_events``/``message_bytes`` (``pack``). Each message carries a ``Nats-Msg-Id`` (the event's
``event_id/timestamp``, or a digest of its events' ids): JetStream drops a re-publish within its duplicate
window, and the writers' ``ON CONFLICT DO NOTHING`` (R5) drops any later one, so retries and redeliveries
are harmless.

Writers (``auditwatch writer``, any number) share one durable pull consumer: fetch a batch, write it in
one transaction, ack after commit; the next batch is fetched and checked while the previous one commits
(one batch ahead, no further). Held messages are kept in progress, so an outage of the database does not
make JetStream redeliver them. A writer killed mid-batch never acked, so JetStream redelivers the
batch after ``ack_wait`` to whichever writer is alive. A message whose write fails for a reason in the
data (not because the database is down) is retried; on its ``max_failures``-th delivery (R10) it is
published to the dead-letter stream with the error and removed from the work queue. An event that fails
inside a message of many is re-published alone (``_split``) and goes that way by itself. Dead letters are
listed and replayed through ``DeadLetters`` (the API and the CLI).

Kafka would slot in behind the same two seams: a publisher with ``write(records) -> list[bool]`` that
returns after the broker's ack (``acks=all``), and a consumer group that commits offsets after the
database commit, with a dead-letter topic.

Why one module of ~800 lines: the publisher, the writer and the dead letters share the wire format,
the message id and the failure rules above, and a change to one is a change to all three.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import orjson
import psycopg
from nats.js import api
from psycopg_pool import PoolTimeout

from ingest import busdurability, metrics
from ingest.busguard import BusGuard
from ingest.bussign import HEADER as SIGNATURE_HEADER
from ingest.bussign import BusKeys, signature_of
from ingest.errors import Unavailable
from storage import request_ids
from storage.errors import DatabaseUnavailable
from storage.events import EventRecord, Outcome
from storage.timescale.writer import EventWriter

log = logging.getLogger(__name__)
T = TypeVar("T")
CONSUMER = "writers"
_EVENT_FIELDS = frozenset(EventRecord.__dataclass_fields__)


@dataclass(frozen=True)
class BusConfig:
    url: str
    stream: str = "AUDITWATCH_EVENTS"
    subject: str = "auditwatch.events"
    deadletter_stream: str = "AUDITWATCH_DEADLETTERS"
    deadletter_subject: str = "auditwatch.deadletters"
    publish_timeout: float = 5.0
    ack_wait: float = 30.0
    max_failures: int = 3
    batch: int = 1000  # events per writer transaction, about (whole messages are fetched)
    message_events: int = 500  # events per published message at most (see pack)
    message_bytes: int = 256 * 1024  # and bytes, below the server's max_payload; a larger event goes alone
    fetch_bytes: int = 8 * 1024 * 1024  # what one fetch may bring at most (see BusWriter.next_fetch_size)
    replicas: int = 1  # the streams' copies; what an ack means: ingest.busdurability
    sync: str = "always"  # the server fsyncs every write ("always") or periodically ("interval")
    monitor_url: str = ""  # the server's HTTP monitoring URL, to confirm ``sync`` at connect
    keys: BusKeys | None = None  # nodes sign what they checked, writers trust what verifies (ingest.bussign)

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.url.split(",") if u.strip()]


# -- the message format ------------------------------------------------------------------------------

def encode(record: EventRecord) -> bytes:
    return orjson.dumps(record.to_json())


_REQUIRED_FIELDS = frozenset(("event_id", "timestamp", "event_type", "user_id", "received_at"))


def parse(data: bytes) -> dict[str, Any]:
    """An encoded record's JSON object, checked for the shape ``encode`` writes (the fields of an
    EventRecord, the required ones present); ValueError for anything else (a poison message). The writer
    validates the values themselves (``BusGuard.check_encoded``)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or not obj.keys() <= _EVENT_FIELDS:
        raise ValueError("not an encoded audit event")
    if not _REQUIRED_FIELDS <= obj.keys():
        raise ValueError(f"not an encoded audit event: KeyError '{sorted(_REQUIRED_FIELDS - obj.keys())[0]}'")
    return obj


def decode(data: bytes) -> EventRecord:
    """The record a publisher encoded; ValueError for anything else (a poison message)."""
    obj = parse(data)
    try:
        return EventRecord(
            event_id=uuid.UUID(obj["event_id"]),
            timestamp=datetime.fromisoformat(obj["timestamp"]),
            event_type=str(obj["event_type"]),
            user_id=str(obj["user_id"]),
            received_at=datetime.fromisoformat(obj["received_at"]),
            outcome=Outcome(obj.get("outcome") or "unknown"),
            source=obj.get("source"),
            source_ip=obj.get("source_ip"),
            source_country=obj.get("source_country"),
            source_asn=obj.get("source_asn"),
            user_agent=obj.get("user_agent"),
            resource_id=obj.get("resource_id"),
            metadata=obj.get("metadata") or {},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an encoded audit event: {exc.__class__.__name__} {exc}") from None


def message_id(record: EventRecord) -> str:
    return f"{record.event_id}/{record.timestamp.isoformat()}"


def pack(records: Sequence[EventRecord], *, max_events: int, max_bytes: int) -> list[tuple[int, bytes, str]]:
    """The records as messages: ``(how many records, body, Nats-Msg-Id)``, in order.

    A body is one encoded record per line (orjson never writes a raw newline), so a message of one record is
    the old one-event format and a writer reads both alike. Records are cut into messages of at most
    ``max_events`` and ``max_bytes``; a record larger than ``max_bytes`` goes alone. One message per event cost
    a JetStream write (and, with ``sync: always``, an fsync), a reply and an ack each: per-event work that
    held the bus path at a fraction of the direct one.

    The id of a one-record message is the record's own, as before; a larger message's id is a digest of its
    records' ids, so a node that re-publishes the same batch (a client's retry) is absorbed by JetStream's
    duplicate window, and anything else by the writers' R5."""
    out: list[tuple[int, bytes, str]] = []
    lines: list[bytes] = []
    ids: list[str] = []
    size = 0

    def close() -> None:
        if len(lines) == 1:
            out.append((1, lines[0], ids[0]))
        elif lines:
            digest = hashlib.blake2b("\n".join(ids).encode(), digest_size=20).hexdigest()
            out.append((len(lines), b"\n".join(lines), f"batch/{len(lines)}/{digest}"))
        lines.clear()
        ids.clear()

    for record in records:
        line = encode(record)
        if lines and (len(lines) >= max_events or size + 1 + len(line) > max_bytes):
            close()
            size = 0
        lines.append(line)
        ids.append(message_id(record))
        size += len(line) + 1
    close()
    return out


MAX_MESSAGE_EVENTS = 5000  # a message with more lines did not come from a publisher here: refused whole


def unpack(data: bytes) -> list[bytes]:
    """A message's records, one encoded record each (blank lines skipped); the whole body if it has none."""
    if b"\n" not in data:
        return [data]
    lines = [line for line in data.split(b"\n") if line.strip()]
    return lines or [data]


async def confirm_durability(config: BusConfig) -> None:
    """Check with the server that an ack means what ``config.sync`` says (when it can), and say it."""
    verified = await asyncio.to_thread(busdurability.check_sync, config.monitor_url, config.sync)
    busdurability.announce(config.replicas, config.sync, verified is not None)


async def ensure_streams(js, config: BusConfig) -> None:
    """Create the work-queue stream and the dead-letter stream if they are missing (idempotent), with the
    configured replicas on file storage; refuse existing ones that are weaker."""
    for name, subject, retention in ((config.stream, config.subject, api.RetentionPolicy.WORK_QUEUE),
                                     (config.deadletter_stream, config.deadletter_subject, api.RetentionPolicy.LIMITS)):
        try:
            busdurability.check_stream(await js.stream_info(name), name=name, replicas=config.replicas)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(api.StreamConfig(name=name, subjects=[subject], retention=retention,
                                                     storage=api.StorageType.FILE, duplicate_window=120.0,
                                                     num_replicas=config.replicas))
            except nats.js.errors.BadRequestError as exc:
                if "already in use" not in str(exc):
                    raise


class _LoopThread:
    """An asyncio loop on a daemon thread, so synchronous request threads can use the async client."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()  # or it would go on (reconnecting, say) in the background
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class BusClient:
    """One NATS connection per process, connected on first use (after a fork, never before)."""

    def __init__(self, config: BusConfig) -> None:
        self.config = config
        self._loop: _LoopThread | None = None
        self._nc = None
        self._js = None
        self._lock = threading.Lock()

    def _run(self, coro_fn: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = _LoopThread("nats-client")
        return self._loop.run(coro_fn(), timeout)

    async def _connected(self):
        if self._nc is None or self._nc.is_closed:
            # Reconnect for ever once connected; but the first connection gets one publish timeout.
            self._js = None
            self._nc = await asyncio.wait_for(nats.connect(
                self.config.servers, connect_timeout=2, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                allow_reconnect=True, name="auditwatch", error_cb=_say_once_per_kind),
                self.config.publish_timeout)
        if self._js is None:  # usable only once the durability and the streams check out
            js = self._nc.jetstream(timeout=self.config.publish_timeout)
            await confirm_durability(self.config)
            await ensure_streams(js, self.config)
            self._js = js
        return self._js

    def call(self, fn: Callable[[Any], Coroutine[Any, Any, T]], timeout: float | None = None) -> T:
        """Run ``fn(jetstream)`` on the client loop; any broker trouble becomes ``Unavailable`` (503)."""
        timeout = timeout or self.config.publish_timeout

        async def go():
            return await fn(await self._connected())

        try:
            return self._run(go, timeout + 3)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise Unavailable(f"the event bus is unavailable ({exc.__class__.__name__}); nothing was "
                              "acknowledged, retry later") from exc

    def close(self) -> None:
        if self._loop is None:
            return
        if self._nc is not None and not self._nc.is_closed:
            try:
                self._loop.run(self._nc.close(), 5)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("closing the NATS connection: %s", exc)
        try:  # subscriptions' reader tasks end on the loop, not after it: else "Event loop is closed" when collected
            self._loop.run(_end_tasks(), 5)
        except (RuntimeError, TimeoutError) as exc:
            log.warning("ending the NATS client's tasks: %s", exc)
        self._loop.stop()


_last_said: dict[str, float] = {}


async def _say_once_per_kind(exc: Exception) -> None:
    """nats-py's default error callback logs a full traceback on every reconnect attempt (twice a second while
    the broker is down). One line per kind of trouble a minute says as much; formatting tracebacks on the loop
    thread also raced CPython 3.11's AST parser in whichever thread was parsing (SystemError in ast.parse)."""
    kind = exc.__class__.__name__
    now = time.monotonic()
    if now - _last_said.get(kind, -60.0) >= 60.0:
        _last_said[kind] = now
        log.warning("NATS connection trouble (%s: %s); reconnecting every 0.5 s", kind, exc)


async def _end_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class BusPublisher:
    """The pipeline's sink when a bus is configured: ``write`` returns once JetStream has every event."""

    def __init__(self, client: BusClient) -> None:
        self._client = client
        self.config = client.config

    def write(self, records: Sequence[EventRecord], timeout: float | None = None) -> list[bool]:
        """Publish and wait for JetStream's acks; True where the event's message was new to the stream's window
        (a message of many events is new or a duplicate as a whole: see ``pack``)."""
        if not records:
            return []
        config = self.config
        trace = request_ids.headers()  # read here, in the request's thread: the bus loop has no request context

        async def publish(js) -> list[bool]:
            # One reply subscription per batch instead of a future, a semaphore and a PubAck per message
            # (publish_async's): the publishing node's CPU per event is what bounds the bus path.
            nc = self._client._nc
            messages = pack(records, max_events=config.message_events,
                            max_bytes=max(1, min(config.message_bytes, nc.max_payload - 16 * 1024)))
            inbox = nc.new_inbox()
            cut = len(inbox) + 1
            answers: list[bool | BaseException | None] = [None] * len(messages)
            left = [len(messages)]
            done = asyncio.get_running_loop().create_future()

            async def on_reply(msg) -> None:
                i = int(msg.subject[cut:])
                if answers[i] is not None:
                    return
                if msg.headers and msg.headers.get(api.Header.STATUS) == "503":
                    answers[i] = nats.js.errors.NoStreamResponseError()
                else:
                    resp = orjson.loads(msg.data)
                    error = resp.get("error")
                    answers[i] = (nats.js.errors.APIError.from_error(error) if error
                                  else not resp.get("duplicate", False))
                left[0] -= 1
                if not left[0] and not done.done():
                    done.set_result(None)

            sub = await nc.subscribe(f"{inbox}.*", cb=on_reply, pending_msgs_limit=max(len(messages), 65536))
            keys = config.keys
            try:
                for i, (_, body, msg_id) in enumerate(messages):
                    headers = {api.Header.MSG_ID: msg_id, api.Header.EXPECTED_STREAM: config.stream, **trace}
                    if keys is not None:  # checked here: a writer holding the key need not check it again
                        headers[SIGNATURE_HEADER] = keys.sign(body)
                    await nc.publish(config.subject, body, reply=f"{inbox}.{i}", headers=headers)
                await asyncio.wait_for(done, config.publish_timeout)
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
            statuses: list[bool] = []
            for (count, _, _), answer in zip(messages, answers, strict=True):
                if isinstance(answer, BaseException):
                    raise answer
                statuses += [bool(answer)] * count
            return statuses

        return self._client.call(publish)


# -- dead letters ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeadLetter:
    seq: int
    time: datetime | None
    error: str
    deliveries: int
    event: dict[str, Any] | None  # the event as published, when it decodes
    raw: str | None  # otherwise the first bytes of the message

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time.isoformat() if self.time else None, "error": self.error,
                "deliveries": self.deliveries, "event": self.event, "raw": self.raw}


class DeadLetters:
    """List and replay the dead-letter stream."""

    def __init__(self, client: BusClient) -> None:
        self._client = client
        self.config = client.config

    def close(self) -> None:
        self._client.close()

    def list(self, *, limit: int = 100, after: int = 0) -> list[DeadLetter]:
        config = self.config

        async def read(js) -> list[DeadLetter]:
            out: list[DeadLetter] = []
            seq = after + 1
            while len(out) < limit:
                try:
                    msg = await js.get_msg(config.deadletter_stream, seq=seq, subject=config.deadletter_subject,
                                           next=True)
                except nats.js.errors.NotFoundError:
                    break
                out.append(_dead_letter(msg))
                seq = msg.seq + 1
            return out

        return self._client.call(read, timeout=30)

    def replay(self, seqs: Sequence[int] | None = None, *, progress: Callable[[int], None] | None = None) -> int:
        """Publish dead letters back to the work queue (all, or the given sequence numbers) and remove them."""
        config = self.config

        async def run(js) -> int:
            wanted = list(seqs) if seqs is not None else None
            done = 0
            seq = 1
            while True:
                if wanted is not None:
                    if not wanted:
                        break
                    seq = wanted.pop(0)
                    try:
                        msg = await js.get_msg(config.deadletter_stream, seq=seq)
                    except nats.js.errors.NotFoundError:
                        continue
                else:
                    try:
                        msg = await js.get_msg(config.deadletter_stream, seq=seq,
                                               subject=config.deadletter_subject, next=True)
                    except nats.js.errors.NotFoundError:
                        break
                # A new message id: the original's may still be inside the duplicate window.
                msg_id = f"replay/{msg.seq}/{(msg.headers or {}).get(api.Header.MSG_ID, '')}"
                await js.publish(config.subject, msg.data or b"", stream=config.stream,
                                 headers={api.Header.MSG_ID: msg_id})
                await js.delete_msg(config.deadletter_stream, msg.seq)
                done += 1
                if progress:
                    progress(1)
                seq = msg.seq + 1
            return done

        return self._client.call(run, timeout=600)


def _dead_letter(msg) -> DeadLetter:
    headers = msg.headers or {}
    try:
        event = decode(msg.data or b"").to_json()
        raw = None
    except ValueError:
        event = None
        raw = (msg.data or b"")[:512].decode("utf-8", "replace")
    try:
        deliveries = int(headers.get("Auditwatch-Deliveries", "0"))
    except ValueError:
        deliveries = 0
    return DeadLetter(seq=msg.seq, time=msg.time, error=headers.get("Auditwatch-Error", ""),
                      deliveries=deliveries, event=event, raw=raw)


# -- the writer ------------------------------------------------------------------------------------------

INITIAL_SIZE_HINT = 64 * 1024  # until messages are seen: 128 per fetch at the default fetch_bytes
MIN_SIZE_HINT = 256  # an event is rarely smaller; keeps fetches at ``batch`` for ordinary traffic

# What a writer waits out while attaching: no server answering, an election under way (timeouts, no
# responders, JetStream's 503), not a misconfiguration (BadRequestError, BusDurabilityError).
STARTUP_ERRORS = (OSError, nats.errors.NoServersError, nats.errors.TimeoutError, nats.errors.NoRespondersError,
                  nats.errors.ConnectionClosedError, nats.js.errors.ServiceUnavailableError,
                  nats.js.errors.NoStreamResponseError)
AVAILABILITY_ERRORS = (psycopg.OperationalError, PoolTimeout, DatabaseUnavailable)
# Failures that are the message's own (a value the database refuses); checked after AVAILABILITY_ERRORS.
DATA_ERRORS = (psycopg.Error, ValueError, TypeError, OSError)


@dataclass
class WriterStats:
    stored: int = 0
    duplicates: int = 0
    batches: int = 0
    retried: int = 0
    dead_lettered: int = 0
    split: int = 0  # events that failed inside a message of many, re-published alone to go through R10 on their own
    signed: int = 0  # messages whose node's signature verified: stored as sent, not re-validated
    bad_signatures: int = 0  # messages signed with a key this writer does not hold, or altered: re-validated
    slow_consumer: int = 0  # the client's or the server's slow-consumer verdicts (messages dropped, then redelivered)
    reconnects: int = 0  # the connection was lost (a server's slow-consumer cut, a node down) and came back
    attach_retries: int = 0  # attempts to attach to the bus (connect, streams, consumer) that waited it out
    largest_fetch_bytes: int = 0
    fetches: collections.deque = field(default_factory=lambda: collections.deque(maxlen=64))  # (asked, got, bytes)


class BusWriter:
    """Consumes the work queue into TimescaleDB: re-validate, batch write, ack after commit, dead-letter poison."""

    def __init__(self, config: BusConfig, writer: EventWriter, *, guard: BusGuard | None = None) -> None:
        self.config = config
        self._writer = writer
        self._guard = guard or BusGuard(writer.pool)
        self.stats = WriterStats()
        self._size_hint = INITIAL_SIZE_HINT
        self._events_hint = max(1, config.batch)  # events per message, at most, in the last fetch

    def next_fetch_size(self) -> int:
        """How many messages to ask for: about ``batch`` events, and ``fetch_bytes`` over the largest message
        seen lately.

        A fetch of ``batch`` messages that are each near the server's max_payload (1 MB: a raw publisher, a
        misconfigured producer) is a gigabyte pushed at once: the client drops it as a slow consumer and the
        server disconnects it, again at every redelivery. JetStream's pull request can carry ``max_bytes``,
        but nats-py's ``fetch`` does not expose it, so the writer sizes each fetch from what it has seen:
        it starts at 128, grows while messages stay small (the hint decays by an eighth per fetch), and shrinks
        at once when a large one arrives. What stays unbounded is the one fetch in which large messages first
        appear after a long run of small ones: ``batch`` messages at most, and the next fetch is bounded again.

        A message holds one event or many (``pack``): the count is ``batch`` over the most events a message
        of the last fetch held. Until a fetch has been seen that is one message, so the first transaction is
        never ``batch`` messages of hundreds of events each."""
        by_events = max(1, self.config.batch // self._events_hint)
        return max(1, min(by_events, self.config.fetch_bytes // self._size_hint))

    def _saw(self, msgs: list) -> None:
        sizes = [len(m.data or b"") for m in msgs]
        if sizes:
            self.stats.largest_fetch_bytes = max(self.stats.largest_fetch_bytes, sum(sizes))
            self._size_hint = max(MIN_SIZE_HINT, max(sizes), self._size_hint - self._size_hint // 8)
            self._events_hint = max((m.data or b"").count(b"\n") + 1 for m in msgs)

    async def run(self, stop: asyncio.Event, *, on_batch: Callable[[WriterStats], None] | None = None) -> None:
        """Fetch, check and decode the next batch while the previous one commits; one batch in flight at most.

        Two batches are held at a time (one committing, the next prepared), so memory stays bounded and the
        prepared batch waits at most one commit. While the writer holds messages it tells JetStream they are in
        progress, so a long commit or a database outage does not make JetStream redeliver them (to another
        writer, as a storm of deliveries): a held batch is retried here until the database is back."""
        config = self.config
        async def on_error(exc: Exception) -> None:
            if isinstance(exc, nats.errors.SlowConsumerError) or "slow consumer" in str(exc).lower():
                self.stats.slow_consumer += 1
            log.warning("writer: NATS reported %s", exc)

        async def on_reconnect() -> None:
            self.stats.reconnects += 1

        async def attach():
            nc = await nats.connect(config.servers, connect_timeout=2, max_reconnect_attempts=-1,
                                    reconnect_time_wait=0.5, name="auditwatch-writer", error_cb=on_error,
                                    reconnected_cb=on_reconnect)
            try:
                js = nc.jetstream(timeout=10)
                await confirm_durability(config)
                await ensure_streams(js, config)
                sub = await js.pull_subscribe(
                    config.subject, durable=CONSUMER, stream=config.stream,
                    config=api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, ack_wait=config.ack_wait,
                                              max_deliver=-1, max_ack_pending=max(config.batch * 4, 1000)))
            except BaseException:
                await nc.close()
                raise
            return nc, js, sub

        attached = await self._until_attached(attach, stop)
        if attached is None:
            return
        nc, js, sub = attached
        loop = asyncio.get_running_loop()
        held: list[list] = []  # batches fetched and not yet settled, kept alive by _keep_alive
        keep_alive = asyncio.create_task(self._keep_alive(held))
        observing = asyncio.create_task(self._observe(js, sub))
        writing: asyncio.Task | None = None
        try:
            while not stop.is_set():
                if writing is not None and writing.done():
                    await writing  # its errors are the writer's own (a bug): they end the run
                    writing = None
                try:
                    asked = self.next_fetch_size()
                    msgs = await sub.fetch(asked, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except nats.errors.Error as exc:
                    log.warning("writer: fetch failed (%s); retrying", exc)
                    await asyncio.sleep(1)
                    continue
                self.stats.fetches.append((asked, len(msgs), sum(len(m.data or b"") for m in msgs)))
                self._saw(msgs)
                held.append(msgs)
                good: list[tuple[Any, list[tuple[bytes, EventRecord]]]] = []
                try:
                    good = await self._prepare(js, msgs, loop, stop)
                finally:
                    if not good:
                        held.remove(msgs)
                if writing is not None:
                    await writing  # never more than one batch ahead of the commit
                    writing = None
                if good:
                    writing = asyncio.create_task(self._store(js, good, msgs, held, loop, stop, on_batch))
        finally:
            if writing is not None:
                await writing
            for task in (keep_alive, observing):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # Flush the acks already sent, then leave; anything fetched and not acked is redelivered.
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await nc.flush(timeout=5)
            await nc.close()

    async def _until_attached(self, attach: Callable[[], Coroutine[Any, Any, T]], stop: asyncio.Event) -> T | None:
        """``attach()`` retried while the bus is unreachable or busy electing leaders; None if stopped meanwhile.

        A writer started beside a cluster that is still electing (or under load) saw its consumer's creation
        time out, and exited: with the other writer gone too, nothing drained the queue. Misconfigurations (a
        stream weaker than the settings, a refused consumer config) are not retried: they end the run."""
        wait = 1.0
        while True:
            attaching = asyncio.ensure_future(attach())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({attaching, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not attaching.done():  # stopped while nats.connect still waits for a server (it waits for ever)
                attaching.cancel()
                with contextlib.suppress(asyncio.CancelledError, *STARTUP_ERRORS):
                    await attaching
                return None
            try:
                return attaching.result()
            except STARTUP_ERRORS as exc:
                log.warning("writer: the bus at %s is not ready (%s: %s); retrying in %.0f s (check that the NATS "
                            "servers are up and that JetStream has a leader)", self.config.url,
                            exc.__class__.__name__, exc, wait)
                self.stats.attach_retries += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                return None
            wait = min(wait * 2, 10.0)

    async def _observe(self, js, sub) -> None:
        """The lag and dead-letter gauges, every few seconds, beside the fetch loop and never in it.

        Each read is a JetStream API request with the client's 10 s timeout. While a node is down and the
        consumer has no leader yet, reading them in the loop held fetching back until they timed out (seen in
        the cluster test: the consumer had a new leader 7 s after the kill, the writer fetched again 8 s
        later, when the read gave up)."""
        failing = False
        while True:
            try:
                await metrics.observe_bus(js, sub, self.config)
                failing = False
            except Exception:  # noqa: BLE001 - a bug here must not freeze the gauges for the rest of the run
                if not failing:  # once per streak, not every second
                    log.exception("writer: reading the bus's gauges failed; they keep their last values")
                failing = True
            await asyncio.sleep(1.0)

    async def _keep_alive(self, held: list[list]) -> None:
        """Tell JetStream every third of ``ack_wait`` that the held messages are being worked on (+WPI)."""
        every = max(self.config.ack_wait / 3, 0.5)
        while True:
            await asyncio.sleep(every)
            for msgs in list(held):
                for msg in msgs:
                    if not msg.is_acked:
                        with contextlib.suppress(nats.errors.Error):
                            await msg.in_progress()

    def _checked(self, msgs: list) -> list[tuple[Any, list[tuple[bytes, EventRecord | ValueError]]]]:
        """Each message's events decoded into the records the guard lets be stored (received_at: when JetStream
        stored the message), or why not."""
        out: list[tuple[Any, list[tuple[bytes, EventRecord | ValueError]]]] = []
        keys = self.config.keys
        for msg in msgs:
            at = msg.metadata.timestamp
            outcomes: list[tuple[bytes, EventRecord | ValueError]] = []
            lines = unpack(msg.data or b"")
            if len(lines) > MAX_MESSAGE_EVENTS:  # one bad message must not become thousands of split ones
                out.append((msg, [(msg.data, ValueError(
                    f"malformed message: {len(lines):,} lines, more than the {MAX_MESSAGE_EVENTS:,} events a "
                    "message may hold"))]))
                continue
            signature = signature_of(msg.headers)
            signed = keys is not None and keys.verify(msg.data or b"", signature)
            if signed:  # the node's checks stand, but not for what guards the platform's records (BusGuard)
                self.stats.signed += 1
                check = self._guard.check_signed
            else:
                check = self._guard.check_encoded
                if signature:
                    self._bad_signature(msg, "this writer has no `bus_signing_key`" if keys is None
                                        else "signed with a key this writer does not hold, or altered since")
            checks = self._guard.message_checks(at)
            for line in lines:
                try:
                    obj = parse(line)
                except ValueError as exc:
                    outcomes.append((line, ValueError(f"malformed message: {exc}")))
                    continue
                try:
                    outcomes.append((line, check(obj, at, checks)))
                except ValueError as exc:
                    outcomes.append((line, ValueError(f"refused on re-validation: {exc}")))
            out.append((msg, outcomes))
        return out

    def _bad_signature(self, msg, why: str) -> None:
        """A signature that does not verify: the message is re-validated (nothing is lost), and said, since it
        means a key differs between nodes and writers (or a message was altered on the bus)."""
        self.stats.bad_signatures += 1
        if self.stats.bad_signatures == 1 or self.stats.bad_signatures % 1000 == 0:
            log.warning("writer: message %d carries a node's signature that does not verify (%s); re-validated "
                        "instead (%d so far). Give the nodes and the writers the same `bus_signing_key`.",
                        msg.metadata.sequence.stream, why, self.stats.bad_signatures)

    async def _until_available(self, what: str, call: Callable[[], T], msgs: list, stop: asyncio.Event,
                               loop: asyncio.AbstractEventLoop) -> T | None:
        """``call()`` in the executor, retried while the database is unavailable; None if stopped meanwhile.

        The messages stay held (in progress), so JetStream does not redeliver them and their delivery counts
        do not grow during an outage; on stop they are handed back at once for another writer."""
        wait = 1.0
        while True:
            try:
                return await loop.run_in_executor(None, call)
            except AVAILABILITY_ERRORS as exc:  # not the messages' fault: not counted against them
                log.error("writer: database unavailable while %s (%s); holding %d messages, retrying in %.0f s",
                          what, exc, len(msgs), wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                for msg in msgs:
                    if not msg.is_acked:
                        await msg.nak()
                return None
            wait = min(wait * 2, 10.0)

    async def _prepare(self, js, msgs: list, loop: asyncio.AbstractEventLoop,
                       stop: asyncio.Event) -> list[tuple[Any, list[tuple[bytes, EventRecord]]]]:
        """Decode and re-validate a batch (off the event loop); failures go to R10 at once: a message's own, or
        the event's alone when it came in a message of many (``_split``)."""
        checked = await self._until_available("checking a batch", lambda: self._checked(msgs), msgs, stop, loop)
        if checked is None:
            return []
        good: list[tuple[Any, list[tuple[bytes, EventRecord]]]] = []
        for msg, outcomes in checked:
            if len(outcomes) == 1 and isinstance(outcomes[0][1], ValueError):
                await self._failed(js, msg, str(outcomes[0][1]))
                continue
            records = [(line, r) for line, r in outcomes if isinstance(r, EventRecord)]
            refused = [(line, str(r)) for line, r in outcomes if not isinstance(r, EventRecord)]
            if refused and not await self._split(js, msg, refused):
                continue
            if records:
                good.append((msg, records))
            else:
                await msg.ack()
        return good

    async def _split(self, js, msg, refused: list[tuple[bytes, str]]) -> bool:
        """Re-publish events that failed inside a message of many as messages of their own, which then go
        through R10 alone (retried, then dead-lettered one by one, with their own error), and the rest of
        their message is stored. False (the message handed back for a retry) if JetStream did not take them."""
        seq = msg.metadata.sequence.stream
        try:
            for line, error in refused:
                digest = hashlib.blake2b(line, digest_size=12).hexdigest()
                await js.publish(self.config.subject, line, stream=self.config.stream,
                                 headers={api.Header.MSG_ID: f"split/{seq}/{digest}", "Auditwatch-Split-From": str(seq),
                                          "Auditwatch-Error": error[:1000]})
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("writer: could not set apart %d failed events of message %d (%s); it is retried",
                        len(refused), seq, exc)
            with contextlib.suppress(nats.errors.Error):
                await msg.nak(delay=2)
            return False
        self.stats.split += len(refused)
        log.warning("writer: %d of the events in message %d failed (%s); each is retried alone", len(refused), seq,
                    refused[0][1])
        return True

    async def _store(self, js, good: list[tuple[Any, list[tuple[bytes, EventRecord]]]], msgs: list,
                     held: list[list], loop: asyncio.AbstractEventLoop, stop: asyncio.Event,
                     on_batch: Callable[[WriterStats], None] | None) -> None:
        """Write a prepared batch in one transaction and ack it after commit."""
        try:
            await self._write(js, good, loop, stop)
        finally:
            held.remove(msgs)
        self.stats.batches += 1
        if on_batch:
            on_batch(self.stats)

    async def _write(self, js, good: list[tuple[Any, list[tuple[bytes, EventRecord]]]],
                     loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        records = [r for _, events in good for _, r in events]
        try:
            statuses = await self._until_available("writing a batch", lambda: self._writer.write(records),
                                                   [m for m, _ in good], stop, loop)
        except DATA_ERRORS as exc:
            log.warning("writer: batch of %d failed (%s); writing one by one to find the bad ones", len(records), exc)
            for msg, events in good:
                await self._write_one_by_one(js, msg, events, loop)
            return
        if statuses is None:  # stopped during an outage: handed back
            return
        # After commit: a crash before the acks reach JetStream means redelivery, which R5 absorbs. Each ack is
        # a buffered publish (no round trip); the client's flusher sends them together.
        for msg, _ in good:
            await msg.ack()
        self._count(statuses)
        log.info("writer: stored %d events (%d new)", len(records), sum(statuses),
                 extra={"request_ids": request_ids.from_headers(m.headers for m, _ in good)})

    async def _write_one_by_one(self, js, msg, events: list[tuple[bytes, EventRecord]],
                                loop: asyncio.AbstractEventLoop) -> None:
        """A message's events after its batch failed: in one transaction, and if that fails too, one by one; the
        bad ones go to R10 (``_failed`` for a message of one, ``_split`` otherwise), and the message is acked
        once the rest are stored."""
        if len(events) > 1:  # most messages of a failed batch are fine: one transaction each first
            try:
                statuses_all = await loop.run_in_executor(None, self._writer.write, [r for _, r in events])
            except AVAILABILITY_ERRORS:
                await msg.nak(delay=2)
                return
            except DATA_ERRORS:
                pass
            else:
                self._count(statuses_all)
                await msg.ack()
                return
        refused: list[tuple[bytes, str]] = []
        statuses: list[bool] = []
        for line, record in events:
            try:
                statuses += await loop.run_in_executor(None, self._writer.write, [record])
            except AVAILABILITY_ERRORS:
                self._count(statuses)
                await msg.nak(delay=2)  # the whole message again later; what was stored is absorbed by R5
                return
            except DATA_ERRORS as exc:
                refused.append((line, f"{exc.__class__.__name__}: {exc}".strip()))
        self._count(statuses)
        if refused and len(events) == 1 and len(unpack(msg.data or b"")) == 1:
            await self._failed(js, msg, refused[0][1])
            return
        if refused and not await self._split(js, msg, refused):
            return
        await msg.ack()

    def _count(self, statuses: list[bool]) -> None:
        new = sum(statuses)
        self.stats.stored += new
        self.stats.duplicates += len(statuses) - new

    async def _failed(self, js, msg, error: str) -> None:
        """R10: retry a failed message; on its last allowed delivery, move it to the dead letters."""
        deliveries = msg.metadata.num_delivered
        if deliveries < self.config.max_failures:
            self.stats.retried += 1
            await msg.nak(delay=min(2 ** deliveries * 0.25, 5))
            return
        headers = {"Auditwatch-Error": error[:1000], "Auditwatch-Deliveries": str(deliveries),
                   "Auditwatch-Failed-At": datetime.now(UTC).isoformat(),
                   api.Header.MSG_ID: f"dead/{msg.metadata.sequence.stream}"}
        original = (msg.headers or {}).get(api.Header.MSG_ID)
        if original:
            headers["Auditwatch-Original-Id"] = original
        await js.publish(self.config.deadletter_subject, msg.data, stream=self.config.deadletter_stream,
                         headers=headers)
        await msg.ack()  # removed from the work queue only once the dead letter is safely stored
        self.stats.dead_lettered += 1
        log.error("writer: message %d dead-lettered after %d deliveries: %s",
                  msg.metadata.sequence.stream, deliveries, error)
