"""`make run`'s one port in front of its two gunicorn pools (issue 26; production runs nginx instead).

Each request is read whole (head, then its body: Content-Length or chunked, decoded), sent to the
pool cloudwatchdog.routes.pool_for names over one of that pool's keep-alive unix-socket
connections, and its answer streamed back. Routing is per request, so a keep-alive client that
mixes ingest and reads gets each from its own pool; buffering the body, as nginx does, means a
client that sends slowly holds no gunicorn worker.

At most workers x threads requests per pool are in gunicorn at once (one connection each); the
rest wait here, in a queue bounded by FRONT_QUEUE (503 + Retry-After beyond it), and bodies held at
once are bounded by FRONT_BUFFER_BYTES. A freed slot goes to the credentials waiting in turn (round
robin over API keys, or client addresses without one), first come first served within one, so one
tenant's forty agents queue behind each other, not in front of another tenant's request, and
while others are about one credential holds at most half of a pool's slots (at least one); one
credential may have FRONT_QUEUE_PER_CREDENTIAL requests waiting, and is answered 429 + Retry-After
beyond it (the tenant's share in the pool itself is INGEST_INFLIGHT_PER_TENANT, held in Redis). A
pool that cannot be reached answers 502 + Retry-After.
A credential whose requests queue behind its share (a flood: FLOOD_QUEUED more of its requests wait as
one gets its slot) is served by the ingest_bulk pool when INGEST_BULK_BIND is set (by the ingest pool
while ingest_bulk cannot be reached): the same application in workers
at a lower priority, so on shared cores another tenant's writes pass the flood's, not only at the gate.
Conflicting Content-Length / Transfer-Encoding is refused (400): no request smuggling past us.
Timeouts follow the README's nginx advice: 10 s for a request's head, 30 s between body reads,
90 s for the pool's answer; an idle keep-alive client is closed after 75 s, as gunicorn does.

usage: python -m cloudwatchdog.front   (FRONT_BIND, INGEST_BIND, INGEST_BULK_BIND, WEB_BIND: see the README's Settings)
No Django import: it starts in a fraction of a second and costs little per request.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import signal
import sys
from collections import deque
from dataclasses import dataclass, field

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cloudwatchdog.routes import INGEST, INGEST_BULK, WEB, pool_for, pool_size  # noqa: E402

MAX_HEAD_BYTES = 64 * 1024
STREAM_LIMIT = 1024 * 1024  # asyncio's buffer per connection: a small one pauses and resumes reading a body many times
MAX_BODY_BYTES = int(os.environ.get("FRONT_MAX_BODY_BYTES", 100 * 1024 * 1024))  # TENANT_LIMIT_CEILINGS' body cap
BUFFER_BYTES = int(os.environ.get("FRONT_BUFFER_BYTES", 256 * 1024 * 1024))
QUEUE_LIMIT = int(os.environ.get("FRONT_QUEUE", 128))  # requests waiting for one pool
CREDENTIAL_QUEUE_LIMIT = int(os.environ.get("FRONT_QUEUE_PER_CREDENTIAL", 16))  # of those, for one credential
# A request that gets its slot with this many more of its credential's waiting behind it is a flood's: a
# tenant's few agents, queued behind their share a moment while another floods, are not.
FLOOD_QUEUED = 4
RESERVE_SECONDS = 1.0  # a credential seen this recently still counts as using the pool (FairGate)
IDLE_SECONDS, HEAD_SECONDS, BODY_SECONDS, ANSWER_SECONDS = 75, 10, 30, 90
BACKEND_IDLE_SECONDS = 60  # under gunicorn's keepalive (75 s), so it never closes one we are about to use
CHUNK = 64 * 1024
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
              b"upgrade", b"expect", b"content-length"}
FORWARDED = {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-protocol", b"x-forwarded-ssl"}
TRUSTED_PEERS = {ip.strip() for ip in os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1").split(",")}


class Refusal(Exception):
    """A request we answer ourselves, then close the connection."""

    def __init__(self, status: int, reason: str, retry_after: bool = False):
        super().__init__(reason)
        self.status, self.reason, self.retry_after = status, reason, retry_after


class ClientGone(Exception):
    pass


@dataclass
class Request:
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    keep_alive: bool = True


@dataclass
class Pool:
    """One gunicorn pool: its address, its idle keep-alive connections and how many requests it may hold."""
    name: str
    address: str
    slots: int
    idle: list = field(default_factory=list)  # (reader, writer, since)
    # Serves the requests of credentials whose requests queue behind their share (a flood), at a lower
    # priority: another tenant's request then passes them on the cores, not only at the gate.
    backlog: Pool | None = None

    def __post_init__(self):
        self.gate = FairGate(self.slots)

    async def connect(self):
        if self.address.startswith("unix:"):
            return await asyncio.open_unix_connection(self.address[5:], limit=STREAM_LIMIT)
        host, _, port = self.address.rpartition(":")
        return await asyncio.open_connection(host.strip("[]"), int(port), limit=STREAM_LIMIT)

    def take_idle(self):
        loop_now = asyncio.get_running_loop().time()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if loop_now - since < BACKEND_IDLE_SECONDS and not reader.at_eof():
                return reader, writer
            writer.close()
        return None


class FairGate:
    """A pool's slots, handed out in turn to the credentials waiting for one.

    `waiting` keeps one queue per credential in the order they are served: the credential at its head
    gets the next free slot, then goes to its end (round robin), so a request waits behind at most
    one request of each other credential, however many a flooding tenant has queued. And while
    another credential uses the pool, or did within RESERVE_SECONDS, no credential holds more than
    half the slots (rounded down, at least one): the rest are kept for the others, whose next request
    then waits for no flooding tenant's request to finish, and shares the cores with fewer of them
    (on 2 cores, two of one tenant's requests in flight and their PostgreSQL backends take both).
    A credential alone gets every slot, unless the pool comes second to another that is busy
    (reads_first: then only its first slot is sure).
    """

    def __init__(self, slots: int):
        self.slots = slots
        self.free = slots
        # Another pool whose requests come first (the ingest gate's is the web pool's): while it has any in
        # flight or waiting, `kept_back` of this pool's slots are only for credentials holding none (reads_first);
        # `pokes` are the gates to look again when this one empties.
        self.comes_first: FairGate | None = None
        self.kept_back = 0
        self.pokes: list[FairGate] = []
        self.cap = max(1, slots // 2)  # slots one credential may hold while others are about
        self.waiting: dict[bytes, deque[asyncio.Future]] = {}
        self.queued = 0
        self.held: dict[bytes, int] = {}
        self.seen: dict[bytes, float] = {}  # credential -> when its last request came, oldest first
        self.timer = None

    def queued_for(self, credential: bytes) -> int:
        queue = self.waiting.get(credential)
        return len(queue) if queue else 0

    async def acquire(self, credential: bytes) -> bool:
        """Waits for a slot; returns whether FLOOD_QUEUED more of this credential's requests wait behind this one."""
        self.seen.pop(credential, None)  # to the end: `seen` stays in order of last request
        self.seen[credential] = asyncio.get_running_loop().time()
        turn = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(credential, deque()).append(turn)
        self.queued += 1
        self.dispatch()
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release(credential)  # handed a slot as it was cancelled: pass it on
            else:
                self._forget(credential, turn)
            raise

    def release(self, credential: bytes) -> None:
        self.held[credential] -= 1
        if not self.held[credential]:
            del self.held[credential]
        self.free += 1
        self.dispatch()
        if not self.busy():
            for gate in self.pokes:
                gate.dispatch()

    def busy(self) -> bool:
        return self.free < self.slots or bool(self.queued)

    def dispatch(self) -> None:
        """Hands free slots to the waiting credentials in turn, skipping those at their cap, and those
        holding a slot already while the slots kept back for the pool that comes first are all that is free."""
        kept_back = self.kept_back if self.comes_first is not None and self.comes_first.busy() else 0
        while self.free and self.waiting:
            for credential in self.waiting:
                held = self.held.get(credential, 0)
                # A credential holding nothing may take a kept-back slot: the flood is held back, not a
                # tenant's first request.
                if (held < self.cap or not self._others_about(credential)) and (not held or self.free > kept_back):
                    break
            else:  # all at their cap (or kept back): look again once the others or the reads may have gone
                if self.timer is None:
                    self.timer = asyncio.get_running_loop().call_later(RESERVE_SECONDS, self._look_again)
                return
            queue = self.waiting.pop(credential)
            turn = queue.popleft()
            if queue:
                self.waiting[credential] = queue  # to the end of the round
            self.queued -= 1
            if turn.done():  # cancelled while waiting
                continue
            self.free -= 1
            self.held[credential] = self.held.get(credential, 0) + 1
            turn.set_result(len(queue) >= FLOOD_QUEUED)  # a flood: many more of its requests wait behind this one

    def _others_about(self, credential: bytes) -> bool:
        """Whether another credential has requests here or in the pool, or sent one within RESERVE_SECONDS.

        Costs the same however many keys a client invents: `seen` is trimmed from its oldest end, and
        `held` and `waiting` are bounded by the pool's slots and FRONT_QUEUE."""
        now = asyncio.get_running_loop().time()
        while self.seen:
            oldest, when = next(iter(self.seen.items()))
            if now - when < RESERVE_SECONDS:
                break
            del self.seen[oldest]
        seen_other = len(self.seen) > 1 or (self.seen and credential not in self.seen)
        return bool(seen_other or (self.held.keys() | self.waiting.keys()) - {credential})

    def _look_again(self) -> None:
        self.timer = None
        self.dispatch()

    def _forget(self, credential: bytes, turn: asyncio.Future) -> None:
        queue = self.waiting.get(credential)
        if queue and turn in queue:
            queue.remove(turn)
            self.queued -= 1
            if not queue:
                del self.waiting[credential]


class Front:
    def __init__(self, pools: dict[str, Pool]):
        self.pools = pools
        self.buffered = 0  # bytes of request bodies held at once

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        peer_ip = peer[0] if isinstance(peer, tuple) else "127.0.0.1"
        try:
            while True:
                try:
                    request = await read_request(reader, writer, self)
                except Refusal as refusal:
                    await send_refusal(writer, refusal)
                    return
                if request is None:
                    return
                try:
                    keep_going = await self.forward(request, peer_ip, writer)
                finally:
                    self.buffered -= len(request.body)
                if not keep_going or not request.keep_alive:
                    return
        except (ClientGone, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            return
        except Exception as error:  # a malformed answer from a pool: this connection ends, the front goes on
            print(f"front: {type(error).__name__}: {error}", file=sys.stderr)
        finally:
            writer.close()

    async def forward(self, request: Request, peer_ip: str, client: asyncio.StreamWriter) -> bool:
        """Sends one request to its pool and its answer to the client; False when the client must be closed."""
        pool = self.pools[pool_for(request.method.decode("latin-1"), request.target.decode("latin-1"))]
        if pool.gate.queued >= QUEUE_LIMIT:
            await send_refusal(client, Refusal(503, f"the {pool.name} pool's queue is full", retry_after=True), close=False)
            return True
        credential = credential_of(request, peer_ip)
        if pool.gate.queued_for(credential) >= CREDENTIAL_QUEUE_LIMIT:
            await send_refusal(client, Refusal(429, f"this API key already has {CREDENTIAL_QUEUE_LIMIT} requests waiting "
                                                    f"for the {pool.name} pool", retry_after=True), close=False)
            return True
        flood = await pool.gate.acquire(credential)
        server = pool.backlog if flood and pool.backlog is not None else pool
        try:
            head = backend_head(request, peer_ip)
            for attempt in (0, 1):
                try:
                    server, reused, backend = await open_backend(server, pool, attempt)
                except OSError:
                    await send_refusal(client, Refusal(502, f"the {pool.name} pool is not reachable", retry_after=True),
                                       close=False)
                    return True
                try:
                    backend[1].write(head)
                    backend[1].write(request.body)
                    status_line = await timed(backend[0].readline(), ANSWER_SECONDS)
                    if not status_line:
                        raise ConnectionResetError("closed before answering")
                except (ConnectionError, asyncio.IncompleteReadError) as error:
                    backend[1].close()
                    if reused:  # an idle connection the pool closed as we sent: nothing was processed
                        continue
                    await send_refusal(client, Refusal(502, f"the {server.name} pool closed the connection ({error})",
                                                       retry_after=True), close=False)
                    return True
                except asyncio.TimeoutError:
                    backend[1].close()
                    await send_refusal(client, Refusal(504, f"the {server.name} pool did not answer in {ANSWER_SECONDS} s"))
                    return False
                return await relay_answer(status_line, backend, request, client, server)
            return True
        finally:
            pool.gate.release(credential)


async def open_backend(server: Pool, pool: Pool, attempt: int):
    """(the pool, the idle connection reused or None, the connection) for a request `server` should serve:
    an idle connection on the first attempt, else a new one; the request's own `pool` when `server` is
    its backlog pool and cannot be reached (ingest_bulk not running): a flood is served, not refused."""
    if server is not pool:
        reused = server.take_idle() if attempt == 0 else None
        try:
            return server, reused, reused or await server.connect()
        except OSError:
            pass  # ingest_bulk is not running: the ingest pool serves the flood
    reused = pool.take_idle() if attempt == 0 else None
    return pool, reused, reused or await pool.connect()


def credential_of(request: Request, peer_ip: str) -> bytes:
    """Whose turn a request waits for: its API key (Bearer, or Basic's password, so both schemes of one
    key share a turn), else the client's address. Not checked here: a wrong key is answered 401 by
    the pool at the cost of one turn of its own."""
    for name, value in request.headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"basic":
                with contextlib.suppress(binascii.Error, ValueError):
                    return b"key:" + base64.b64decode(token.strip(), validate=True).partition(b":")[2]
            return b"key:" + token.strip()
    return b"addr:" + peer_ip.encode()


async def timed(awaitable, seconds: float):
    """`awaitable`'s result, or TimeoutError after `seconds` (asyncio.wait_for without its task a call)."""
    async with asyncio.timeout(seconds):
        return await awaitable


async def read_request(reader, writer, front: Front) -> Request | None:
    """The next request, its body read whole; None when the client closed or idled out between requests."""
    try:
        first = await timed(reader.readline(), IDLE_SECONDS)
        while first in (b"\r\n", b"\n"):  # RFC 9112: ignore empty lines before a request line
            first = await timed(reader.readline(), IDLE_SECONDS)
    except (asyncio.TimeoutError, ValueError, ConnectionError):
        return None
    if not first:
        return None
    if len(first) > MAX_HEAD_BYTES:
        raise Refusal(431, "request head too large")
    try:
        head = await timed(read_header_lines(reader), HEAD_SECONDS)
    except (asyncio.LimitOverrunError, ValueError):
        raise Refusal(431, "request head too large")
    except asyncio.IncompleteReadError:
        raise ClientGone()
    except asyncio.TimeoutError:
        raise Refusal(408, f"request head not received in {HEAD_SECONDS} s")
    request = parse_head(first, head)
    length = body_length(request)
    if request.version == b"HTTP/1.1" and any(n == b"expect" and v.lower() == b"100-continue" for n, v in request.headers):
        if length is not None and length > MAX_BODY_BYTES:
            raise Refusal(413, f"request body over {MAX_BODY_BYTES} bytes")
        if length != 0:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if length is None:
        request.body = await read_chunked(reader, front)
    elif length:
        if length > MAX_BODY_BYTES:
            raise Refusal(413, f"request body over {MAX_BODY_BYTES} bytes")
        reserve(front, length)
        try:
            request.body = await timed(reader.readexactly(length), BODY_SECONDS + length / 1e6)
        except BaseException:
            front.buffered -= length
            raise
        front.buffered -= length
    front.buffered += len(request.body)
    return request


async def read_header_lines(reader) -> bytes:
    """Header lines up to the empty line that ends them, CRLF-joined; at most MAX_HEAD_BYTES."""
    lines, size = [], 0
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise asyncio.IncompleteReadError(line, None)
        size += len(line)
        if size > MAX_HEAD_BYTES:
            raise ValueError("head too large")
        line = line.rstrip(b"\r\n")
        if not line:
            return b"\r\n".join(lines)
        lines.append(line)


def reserve(front: Front, size: int) -> None:
    if front.buffered + size > BUFFER_BYTES:
        raise Refusal(503, "too many request bodies held at once", retry_after=True)
    front.buffered += size


def parse_head(first: bytes, head: bytes) -> Request:
    parts = first.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[0].isalpha() or not parts[1]:
        raise Refusal(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise Refusal(505, "HTTP version not supported")
    headers = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name or b"\t" in name:
            raise Refusal(400, "malformed header line")
        headers.append((name.lower(), value.strip(b" \t")))
    connection = b",".join(v for n, v in headers if n == b"connection").lower()
    keep_alive = b"close" not in connection and (version == b"HTTP/1.1" or b"keep-alive" in connection)
    return Request(method, target, version, headers, keep_alive=keep_alive)


def body_length(request: Request) -> int | None:
    """The body's length by Content-Length, 0 without one, or None for a chunked body."""
    lengths = {v for n, v in request.headers if n == b"content-length"}
    codings = [v.lower() for n, v in request.headers if n == b"transfer-encoding"]
    if codings:
        if lengths:
            raise Refusal(400, "both Content-Length and Transfer-Encoding")
        if request.version != b"HTTP/1.1" or [c.strip() for c in b",".join(codings).split(b",")] != [b"chunked"]:
            raise Refusal(400, "Transfer-Encoding other than chunked")
        return None
    if len(lengths) > 1:
        raise Refusal(400, "conflicting Content-Length headers")
    if not lengths:
        return 0
    value = lengths.pop()
    if not value.isdigit():
        raise Refusal(400, "Content-Length is not a number")
    return int(value)


async def read_chunked(reader, front: Front) -> bytes:
    body = bytearray()
    try:
        while True:
            size_line = await timed(reader.readline(), BODY_SECONDS)
            size_text = size_line.split(b";")[0].strip()
            if not size_line.endswith(b"\n") or not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                raise Refusal(400, "malformed chunk size")
            size = int(size_text, 16)
            if size == 0:
                break
            if len(body) + size > MAX_BODY_BYTES:
                raise Refusal(413, f"request body over {MAX_BODY_BYTES} bytes")
            reserve(front, len(body) + size)
            front.buffered -= len(body) + size  # counted once the whole body is in (read_request)
            body += await timed(reader.readexactly(size), BODY_SECONDS)
            if await timed(reader.readline(), BODY_SECONDS) not in (b"\r\n", b"\n"):
                raise Refusal(400, "chunk not followed by CRLF")
        while (await timed(reader.readline(), BODY_SECONDS)) not in (b"\r\n", b"\n", b""):
            pass  # trailers: dropped, as the body is forwarded with a Content-Length
    except asyncio.TimeoutError:
        raise Refusal(408, f"request body not received in {BODY_SECONDS} s")
    except asyncio.IncompleteReadError:
        raise ClientGone()
    return bytes(body)


def backend_head(request: Request, peer_ip: str) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (request.method, request.target)]
    trusted = peer_ip in TRUSTED_PEERS
    forwarded_for = [v for n, v in request.headers if n == b"x-forwarded-for"] if trusted else []
    for name, value in request.headers:
        if name in HOP_BY_HOP or (name in FORWARDED and not trusted) or name == b"x-forwarded-for":
            continue
        lines.append(name + b": " + value)
    lines.append(b"x-forwarded-for: " + b", ".join(forwarded_for + [peer_ip.encode()]))
    if not trusted or not any(n == b"x-forwarded-proto" for n, _ in request.headers):
        lines.append(b"x-forwarded-proto: http")
    if request.body or request.method in (b"POST", b"PUT", b"PATCH"):
        lines.append(b"content-length: %d" % len(request.body))
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def relay_answer(status_line: bytes, backend, request: Request, client, pool: Pool) -> bool:
    """Streams the pool's answer to the client; returns whether the client connection stays open."""
    reader, writer = backend
    head = await timed(read_header_lines(reader), ANSWER_SECONDS)
    status = int(status_line.split(b" ", 2)[1])
    headers = [line for line in head.split(b"\r\n") if line]
    names = {line.partition(b":")[0].strip().lower(): line.partition(b":")[2].strip() for line in headers}
    backend_keeps = b"close" not in names.get(b"connection", b"").lower()
    chunked = b"chunked" in names.get(b"transfer-encoding", b"").lower()
    length = int(names[b"content-length"]) if b"content-length" in names else None
    no_body = request.method == b"HEAD" or status in (204, 304) or 100 <= status < 200
    until_close = not no_body and not chunked and length is None
    dechunk = chunked and request.version == b"HTTP/1.0"  # a 1.0 client reads to the close instead
    keep_client = request.keep_alive and not until_close and not dechunk
    out = [status_line.rstrip(b"\r\n").replace(b"HTTP/1.1", request.version, 1)]
    for line in headers:
        name = line.partition(b":")[0].strip().lower()
        if name in (b"connection", b"keep-alive") or (dechunk and name == b"transfer-encoding"):
            continue
        out.append(line)
    if not keep_client:
        out.append(b"Connection: close")
    elif request.version == b"HTTP/1.0":
        out.append(b"Connection: keep-alive")
    client.write(b"\r\n".join(out) + b"\r\n\r\n")
    try:
        if no_body:
            pass
        elif chunked:
            await relay_chunked(reader, client, raw=not dechunk)
        elif length is not None:
            await relay_bytes(reader, client, length)
        else:
            await relay_bytes(reader, client, None)
            backend_keeps = False
        await client.drain()
    except BaseException:
        writer.close()
        raise
    if backend_keeps and not until_close:
        pool.idle.append((reader, writer, asyncio.get_running_loop().time()))
    else:
        writer.close()
    return keep_client


async def relay_bytes(reader, client, length: int | None) -> None:
    while length is None or length > 0:
        data = await timed(reader.read(CHUNK if length is None else min(CHUNK, length)), ANSWER_SECONDS)
        if not data:
            if length is None:
                return
            raise ConnectionResetError("the pool closed mid-answer")
        client.write(data)
        await client.drain()
        if length is not None:
            length -= len(data)


async def relay_chunked(reader, client, raw: bool) -> None:
    while True:
        size_line = await timed(reader.readline(), ANSWER_SECONDS)
        size = int(size_line.split(b";")[0].strip() or b"x", 16)
        if size == 0:
            trailer = b""
            while (line := await timed(reader.readline(), ANSWER_SECONDS)) not in (b"\r\n", b"\n", b""):
                trailer += line
            if raw:
                client.write(b"0\r\n" + trailer + b"\r\n")
            return
        data = await timed(reader.readexactly(size + 2), ANSWER_SECONDS)
        client.write(size_line + data if raw else data[:-2])
        await client.drain()


async def send_refusal(writer, refusal: Refusal, close: bool = True) -> None:
    body = json.dumps({"detail": refusal.reason[0].upper() + refusal.reason[1:] + "."}).encode() + b"\n"
    reasons = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
               502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout", 505: b"HTTP Version Not Supported"}
    lines = [b"HTTP/1.1 %d %s" % (refusal.status, reasons.get(refusal.status, b"Error")),
             b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    if refusal.retry_after:
        lines.append(b"Retry-After: 1")
    if close:
        lines.append(b"Connection: close")
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()


def pools_from_environment(environ=os.environ) -> dict[str, Pool]:
    pools = {}
    for role, variable in ((INGEST, "INGEST_BIND"), (WEB, "WEB_BIND")):
        workers, threads = pool_size(role, environ)
        pools[role] = Pool(role, environ[variable], workers * threads)
    reads_first(pools, int(environ.get("FRONT_INGEST_KEPT_BACK", 2)))
    if environ.get("INGEST_BULK_BIND"):
        # The gate is the ingest pool's: a flood's requests hold its slots wherever they are served.
        pools[INGEST].backlog = Pool(INGEST_BULK, environ["INGEST_BULK_BIND"], pools[INGEST].slots)
    return pools


def reads_first(pools: dict[str, Pool], kept_back: int) -> None:
    """While the web pool has requests in flight or waiting (reads, the console, scrapes, health checks),
    `kept_back` of the ingest pool's slots are left to credentials holding none (at least one slot stays
    open to all): on 2 shared cores a flood of writes then takes less of them from the reads (read p99
    under a 40-agent flood 2.7-4.6x its figure alone with every slot open, 2.1-2.5x so; the README's
    bench/mixed_load.py figures), and another tenant's request still finds a slot."""
    ingest, web = pools[INGEST].gate, pools[WEB].gate
    ingest.comes_first, ingest.kept_back = web, min(kept_back, ingest.slots - 1)
    web.pokes.append(ingest)


async def serve(bind: str, pools: dict[str, Pool], ready=None) -> None:
    front = Front(pools)
    host, _, port = bind.rpartition(":")
    server = await asyncio.start_server(front.serve_client, host.strip("[]") or None, int(port),
                                        limit=STREAM_LIMIT, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    if ready is not None:
        ready(server)
    async with server:
        await stop.wait()


def main() -> int:
    bind = os.environ.get("FRONT_BIND") or os.environ.get("BIND", "127.0.0.1:8000")
    try:
        pools = pools_from_environment()
    except KeyError as missing:
        print(f"front: {missing.args[0]} is not set (the pool's address, e.g. unix:.data/run/ingest.sock)", file=sys.stderr)
        return 2
    backlog = pools[INGEST].backlog
    print(f"front: listening on {bind}; ingest -> {pools[INGEST].address}"
          + (f" (a flood -> {backlog.address})" if backlog else "") + f", web -> {pools[WEB].address}",
          file=sys.stderr, flush=True)
    asyncio.run(serve(bind, pools))
    return 0


if __name__ == "__main__":
    sys.exit(main())
