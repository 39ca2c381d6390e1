"""make run's front (cloudwatchdog/front.py): per-request routing to the ingest and web pools, and the
HTTP/1.1 it must get right on a public port. The pools here are two small HTTP servers on unix
sockets that answer with what they received (which pool, the head, the body), so each test runs in
milliseconds; tests/test_make_run.py runs the front in front of the real gunicorn pools."""
import asyncio
import base64
import json
import socket
import threading
import time

import pytest

from cloudwatchdog import front
from cloudwatchdog.routes import INGEST, INGEST_BULK, INGEST_ROUTES, WEB


class EchoPool:
    """A pool that answers each request with JSON naming itself and what it received."""

    def __init__(self, name: str, path: str):
        self.name, self.path = name, path
        self.release = None  # set by a test: /slow waits on it
        self.connections = 0
        self.received = []  # targets in the order the pool got them

    async def handle(self, reader, writer):
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                headers = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers.setdefault(name.strip().lower(), []).append(value.strip())
                method, target, _ = line.decode().split(" ")
                body = await reader.readexactly(int(headers.get("content-length", ["0"])[0]))
                self.received.append(target)
                if target.endswith("slow"):
                    await self.release.wait()
                answer = json.dumps({"pool": self.name, "method": method, "target": target, "headers": headers,
                                     "body": body.decode("latin-1")}).encode()
                if target == "/chunked-answer":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                                 % len(answer) + (b"" if method == "HEAD" else answer))
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
def served(tmp_path):
    """A front on a free port in front of echo pools (ingest, with ingest_bulk for its floods, and web);
    yields (port, {name: EchoPool}, {name: front.Pool}, loop)."""
    loop = asyncio.new_event_loop()
    echo = {name: EchoPool(name, str(tmp_path / f"{name}.sock")) for name in (INGEST, WEB, INGEST_BULK)}
    ready, state = threading.Event(), {}

    async def main():
        servers = [await asyncio.start_unix_server(pool.handle, pool.path) for pool in echo.values()]
        pools = {name: front.Pool(name, f"unix:{echo[name].path}", 2) for name in (INGEST, WEB)}
        pools[INGEST].backlog = front.Pool(INGEST_BULK, f"unix:{echo[INGEST_BULK].path}", 2)
        for pool in echo.values():
            pool.release = asyncio.Event()
        state["pools"] = pools
        state["stop"] = asyncio.Event()
        servers.append(await asyncio.start_server(front.Front(pools).serve_client, "127.0.0.1", 0))
        state["port"] = servers[-1].sockets[0].getsockname()[1]
        ready.set()
        await state["stop"].wait()
        for server in servers:
            server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    yield state["port"], echo, state["pools"], loop
    loop.call_soon_threadsafe(state["stop"].set)
    thread.join(5)
    loop.close()


def _connect(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


class Answers:
    """Reads HTTP answers off a client socket, one at a time (pipelined ones in order)."""

    def __init__(self, client: socket.socket):
        self.client, self.buffer = client, b""

    def _fill(self):
        data = self.client.recv(65536)
        if not data:
            raise EOFError(self.buffer)
        self.buffer += data

    def next(self, head_only: bool = False) -> tuple[int, dict, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        status = int(lines[0].split()[1])
        if head_only or status < 200:
            return status, headers, b""
        if "content-length" in headers:
            while len(self.buffer) < int(headers["content-length"]):
                self._fill()
            size = int(headers["content-length"])
            body, self.buffer = self.buffer[:size], self.buffer[size:]
            return status, headers, body
        with_close = b""
        try:
            while True:
                self._fill()
        except EOFError:
            with_close, self.buffer = self.buffer, b""
        return status, headers, with_close


def _request(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{length}{extra}\r\n".encode() + body


def test_one_keep_alive_connection_is_routed_per_request_pipelined_too(served):
    port, echo, _, _ = served
    with _connect(port) as client:
        answers = Answers(client)
        for method, path in INGEST_ROUTES:
            client.sendall(_request(method, path + "?x=1", b"{}"))
            assert json.loads(answers.next()[2])["pool"] == INGEST, path
            client.sendall(_request("GET", path))
            assert json.loads(answers.next()[2])["pool"] == WEB, path
        # Three requests in one write: answered in order, each from its own pool.
        client.sendall(_request("GET", "/api/v1/series") + _request("POST", "/api/v1/write", b"abc")
                       + _request("GET", "/metrics"))
        got = [json.loads(answers.next()[2]) for _ in range(3)]
    assert [(a["pool"], a["target"], a["body"]) for a in got] == [
        (WEB, "/api/v1/series", ""), (INGEST, "/api/v1/write", "abc"), (WEB, "/metrics", "")]
    assert echo[INGEST].connections <= 2 and echo[WEB].connections <= 2  # the pools' connections are kept alive


def test_a_chunked_body_is_decoded_and_forwarded_with_its_length(served):
    port, _, _, _ = served
    with _connect(port) as client:
        client.sendall(b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n")
        status, _, body = Answers(client).next()
    received = json.loads(body)
    assert status == 200 and received["pool"] == INGEST
    assert received["body"] == "Wikipedia in\r\n\r\nchunks."
    assert received["headers"]["content-length"] == ["23"] and "transfer-encoding" not in received["headers"]


def test_expect_100_continue_is_answered_before_the_body_is_sent(served):
    port, _, _, _ = served
    with _connect(port) as client:
        answers = Answers(client)
        client.sendall(b"POST /api/v1/ingest/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                       b"Expect: 100-continue\r\n\r\n")
        assert answers.next()[0] == 100
        client.sendall(b"hello")
        status, _, body = answers.next()
    assert status == 200 and json.loads(body)["body"] == "hello"
    assert "expect" not in json.loads(body)["headers"]


def test_head_gets_no_body_and_the_connection_goes_on(served):
    port, _, _, _ = served
    with _connect(port) as client:
        answers = Answers(client)
        client.sendall(_request("HEAD", "/healthz") + _request("GET", "/healthz"))
        status, headers, _ = answers.next(head_only=True)
        assert status == 200 and int(headers["content-length"]) > 0
        assert json.loads(answers.next()[2])["method"] == "GET"  # no stray body bytes in between


@pytest.mark.parametrize("head", [
    "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n",
    "POST /api/v1/write HTTP/1.1\r\nHost : x\r\n\r\n",
    "GET /a b HTTP/1.1\r\n\r\n",
])
def test_ambiguous_framing_is_refused_with_400_and_the_connection_closed(served, head):
    port, echo, _, _ = served
    with _connect(port) as client:
        client.sendall(head.encode() + b"abc")
        status, headers, _ = Answers(client).next()
        assert status == 400 and headers["connection"] == "close"
        assert client.recv(10) == b""
    assert echo[INGEST].connections == 0


def test_a_body_over_the_cap_is_413_without_being_read(served, monkeypatch):
    port, _, _, _ = served
    monkeypatch.setattr(front, "MAX_BODY_BYTES", 1000)
    with _connect(port) as client:
        client.sendall(b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n")
        assert Answers(client).next()[0] == 413
    with _connect(port) as client:
        client.sendall(b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n")
        assert Answers(client).next()[0] == 413


def test_a_pool_down_is_502_with_retry_after_and_the_other_pool_still_answers(served, tmp_path):
    port, _, pools, _ = served
    pools[INGEST].address = f"unix:{tmp_path / 'nobody.sock'}"
    with _connect(port) as client:
        answers = Answers(client)
        client.sendall(_request("POST", "/api/v1/ingest/metrics", b"{}"))
        status, headers, body = answers.next()
        assert status == 502 and headers["retry-after"] == "1" and b"ingest pool" in body
        client.sendall(_request("GET", "/api/v1/series"))
        assert json.loads(answers.next()[2])["pool"] == WEB


def test_a_full_queue_is_503_with_retry_after_and_reads_are_not_queued_behind_it(served, monkeypatch):
    port, echo, pools, loop = served
    monkeypatch.setattr(front, "QUEUE_LIMIT", 1)
    clients = [_connect(port) for _ in range(4)]
    try:
        for client in clients[:3]:
            client.sendall(_request("GET", "/slow"))
        time.sleep(0.3)  # two in the web pool, one waiting
        clients[3].sendall(_request("GET", "/slow"))
        status, headers, _ = Answers(clients[3]).next()
        assert status == 503 and headers["retry-after"] == "1"
        clients[3].sendall(_request("POST", "/api/v1/push", b"x"))  # ingest is not behind the web queue
        assert json.loads(Answers(clients[3]).next()[2])["pool"] == INGEST
        loop.call_soon_threadsafe(echo[WEB].release.set)
        assert [Answers(c).next()[0] for c in clients[:3]] == [200, 200, 200]
    finally:
        for client in clients:
            client.close()


def _waiting(pools, name: str, count: int) -> None:
    deadline = time.monotonic() + 5
    while pools[name].gate.queued < count:
        assert time.monotonic() < deadline, f"{count} requests never queued"
        time.sleep(0.01)


def test_a_freed_slot_goes_to_the_next_credential_in_turn_not_to_the_longest_queue(served):
    port, echo, pools, loop = served
    key_a, key_b = "Authorization: Bearer key-of-a\r\n", "Authorization: Basic " + \
        base64.b64encode(b"tenant-b:key-of-b").decode() + "\r\n"
    clients = [_connect(port) for _ in range(7)]
    try:
        for client in clients[:2]:  # tenant A holds both of the web pool's slots
            client.sendall(_request("GET", "/slow", extra=key_a))
        time.sleep(0.2)
        for number, client in enumerate(clients[2:6], 1):  # and queues four more, one at a time
            client.sendall(_request("GET", f"/a{number}", extra=key_a))
            _waiting(pools, WEB, number)
        clients[6].sendall(_request("GET", "/b1", extra=key_b))
        _waiting(pools, WEB, 5)
        loop.call_soon_threadsafe(echo[WEB].release.set)
        assert [Answers(c).next()[0] for c in clients] == [200] * 7
        # the slow pair first, then B with the first freed slot (A holds the other: its cap while B
        # is about), not after A's four
        assert echo[WEB].received[:2] == ["/slow", "/slow"] and echo[WEB].received[2:].index("/b1") <= 1
        assert [t for t in echo[WEB].received if t.startswith("/a")] == ["/a1", "/a2", "/a3", "/a4"]
    finally:
        for client in clients:
            client.close()


def test_while_another_key_is_about_one_key_leaves_a_slot_free_and_alone_it_gets_every_slot(served, monkeypatch):
    port, echo, pools, loop = served
    monkeypatch.setattr(front, "RESERVE_SECONDS", 0.5)
    key_a, key_b = "Authorization: Bearer key-of-a\r\n", "Authorization: Bearer key-of-b\r\n"
    clients = [_connect(port) for _ in range(3)]
    try:
        clients[2].sendall(_request("GET", "/b1", extra=key_b))
        assert Answers(clients[2]).next()[0] == 200  # B was here a moment ago
        for client in clients[:2]:
            client.sendall(_request("GET", "/slow", extra=key_a))
        _waiting(pools, WEB, 1)  # A's second request waits though a slot is free: it is kept for B
        assert echo[WEB].received == ["/b1", "/slow"]
        clients[2].sendall(_request("GET", "/b2", extra=key_b))
        assert Answers(clients[2]).next()[0] == 200  # B did not wait for A's slow requests
        deadline = time.monotonic() + 5
        while echo[WEB].received.count("/slow") < 2:  # once B has been away RESERVE_SECONDS, A gets both
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert pools[WEB].gate.held == {b"key:key-of-a": 2} and pools[WEB].gate.free == 0
        loop.call_soon_threadsafe(echo[WEB].release.set)
        assert [Answers(c).next()[0] for c in clients[:2]] == [200, 200]
    finally:
        for client in clients:
            client.close()


def test_a_credential_past_its_queue_share_gets_429_and_others_still_queue(served, monkeypatch):
    port, echo, pools, loop = served
    monkeypatch.setattr(front, "CREDENTIAL_QUEUE_LIMIT", 1)
    key_a, key_b = "Authorization: Bearer key-of-a\r\n", "Authorization: Bearer key-of-b\r\n"
    clients = [_connect(port) for _ in range(5)]
    try:
        for client in clients[:3]:  # two in the pool, one waiting: A's share of the queue
            client.sendall(_request("GET", "/slow", extra=key_a))
        _waiting(pools, WEB, 1)
        clients[3].sendall(_request("GET", "/slow", extra=key_a))
        status, headers, body = Answers(clients[3]).next()
        assert status == 429 and headers["retry-after"] == "1" and b"already has 1 requests waiting" in body
        clients[4].sendall(_request("GET", "/b", extra=key_b))  # another key still queues
        _waiting(pools, WEB, 2)
        loop.call_soon_threadsafe(echo[WEB].release.set)
        assert [Answers(c).next()[0] for c in clients[:3] + clients[4:]] == [200] * 4
    finally:
        for client in clients:
            client.close()


def _flood(port: int, echo: dict, pools: dict, loop) -> list[str]:
    """Key A takes both ingest slots with slow requests, queues five more behind them (a3..a7), and
    they are all answered once the slow ones end; returns the ingest path."""
    ingest = INGEST_ROUTES[0][1]
    key_a = "Authorization: Bearer key-of-a\r\n"
    clients = [_connect(port) for _ in range(7)]
    try:
        for number, client in enumerate(clients[:2], 1):  # A alone takes both slots, nothing queued
            client.sendall(_request("POST", f"{ingest}?a{number}-slow", b"x", extra=key_a))
            deadline = time.monotonic() + 5
            while len(echo[INGEST].received) < number:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        for number, client in enumerate(clients[2:], 3):
            client.sendall(_request("POST", f"{ingest}?a{number}", b"x", extra=key_a))
            _waiting(pools, INGEST, number - 2)
        loop.call_soon_threadsafe(echo[INGEST].release.set)
        assert [Answers(c).next()[0] for c in clients] == [200] * 7
    finally:
        for client in clients:
            client.close()
    return ingest


def test_a_request_with_many_of_its_keys_queued_behind_it_is_served_by_the_bulk_pool(served):
    # A flood's work runs in the lower-priority pool; a key's lone request, and a short queue's, do not.
    port, echo, pools, loop = served
    assert front.FLOOD_QUEUED == 4
    ingest = _flood(port, echo, pools, loop)
    # a3 got a slot with a4..a7 waiting behind it: the flood's pool; a4 had three behind it
    assert echo[INGEST_BULK].received == [f"{ingest}?a3"]
    assert echo[INGEST].received == [f"{ingest}?a1-slow", f"{ingest}?a2-slow"] + [f"{ingest}?a{n}" for n in range(4, 8)]
    client = _connect(port)
    try:
        client.sendall(_request("POST", f"{ingest}?b1", b"x", extra="Authorization: Bearer key-of-b\r\n"))
        status, _, body = Answers(client).next()
        assert status == 200 and json.loads(body)["pool"] == INGEST
    finally:
        client.close()
    deadline = time.monotonic() + 5
    while pools[INGEST].gate.free < 2:  # every slot back (an answer is sent before its slot is freed)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not pools[INGEST].gate.held


def test_a_flood_is_served_by_the_ingest_pool_when_the_bulk_pool_is_not_running(served, tmp_path):
    port, echo, pools, loop = served
    pools[INGEST].backlog.address = f"unix:{tmp_path / 'nobody.sock'}"
    ingest = _flood(port, echo, pools, loop)  # answered 200 every one, none refused
    assert echo[INGEST_BULK].received == []
    assert f"{ingest}?a3" in echo[INGEST].received


def test_forwarded_headers_name_the_client_and_are_trusted_only_from_trusted_peers(served, monkeypatch):
    port, _, _, _ = served
    spoofed = "X-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Proto: https\r\n"
    with _connect(port) as client:
        client.sendall(_request("GET", "/api/v1/series", extra=spoofed))
        headers = json.loads(Answers(client).next()[2])["headers"]
    assert headers["x-forwarded-for"] == ["10.9.9.9, 127.0.0.1"] and headers["x-forwarded-proto"] == ["https"]
    monkeypatch.setattr(front, "TRUSTED_PEERS", set())
    with _connect(port) as client:
        client.sendall(_request("GET", "/api/v1/series", extra=spoofed))
        headers = json.loads(Answers(client).next()[2])["headers"]
    assert headers["x-forwarded-for"] == ["127.0.0.1"] and headers["x-forwarded-proto"] == ["http"]


def test_a_chunked_answer_is_relayed_and_decoded_for_an_http_1_0_client(served):
    port, _, _, _ = served
    with _connect(port) as client:
        client.sendall(_request("GET", "/chunked-answer"))
        answers = Answers(client)
        status, headers, _ = answers.next(head_only=True)
        while not answers.buffer.endswith(b"0\r\n\r\n"):
            answers._fill()
        assert headers["transfer-encoding"] == "chunked" and answers.buffer == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    with _connect(port) as client:
        client.sendall(b"GET /chunked-answer HTTP/1.0\r\n\r\n")
        status, headers, body = Answers(client).next()
    assert status == 200 and body == b"hello world" and headers["connection"] == "close"


def test_a_head_too_large_is_431_and_a_slow_one_408(served, monkeypatch):
    port, echo, _, _ = served
    with _connect(port) as client:
        client.sendall(b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * front.MAX_HEAD_BYTES + b"\r\n\r\n")
        assert Answers(client).next()[0] == 431
    monkeypatch.setattr(front, "HEAD_SECONDS", 0.2)
    with _connect(port) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and nothing more: a slow or stuck client
        status, headers, _ = Answers(client).next()
        assert status == 408 and headers["connection"] == "close"
    assert echo[WEB].connections == 0  # neither reached a pool


def test_clients_that_send_slowly_hold_no_pool_slot(served):
    port, echo, _, _ = served
    slow = [_connect(port) for _ in range(8)]  # more than the pools' 2 slots each
    try:
        for client in slow:
            client.sendall(b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        started = time.monotonic()
        with _connect(port) as client:
            client.sendall(_request("POST", "/api/v1/write", b"whole"))
            assert json.loads(Answers(client).next()[2])["body"] == "whole"
        assert time.monotonic() - started < 1
        assert echo[INGEST].connections == 1  # the half-sent requests never reached the pool
    finally:
        for client in slow:
            client.close()


def test_bodies_past_the_buffer_budget_are_503_with_retry_after(served, monkeypatch):
    port, echo, _, _ = served
    monkeypatch.setattr(front, "BUFFER_BYTES", 50)
    with _connect(port) as client:
        client.sendall(_request("POST", "/api/v1/write", b"x" * 51))
        status, headers, _ = Answers(client).next()
    assert status == 503 and headers["retry-after"] == "1" and echo[INGEST].connections == 0
    with _connect(port) as client:
        client.sendall(_request("POST", "/api/v1/write", b"x" * 50))
        assert Answers(client).next()[0] == 200


def test_a_key_holds_half_a_pools_slots_while_another_is_about_and_all_of_them_alone():
    async def scenario():
        alone, shared = front.FairGate(4), front.FairGate(4)
        for _ in range(4):
            await asyncio.wait_for(alone.acquire(b"a"), 1)
        await shared.acquire(b"b")
        shared.release(b"b")  # B was here a moment ago
        grants = [asyncio.ensure_future(shared.acquire(b"a")) for _ in range(4)]
        await asyncio.sleep(0.05)
        held_while_b_about = shared.held.get(b"a")
        granted = [grant for grant in grants if grant.done()]
        for grant in grants:
            grant.cancel()  # the waiting ones
        await asyncio.gather(*grants, return_exceptions=True)
        for _ in granted:
            shared.release(b"a")
        return alone.held, alone.free, held_while_b_about, shared.held, shared.free, shared.queued

    alone_held, alone_free, held_while_b_about, shared_held, shared_free, shared_queued = asyncio.run(scenario())
    assert alone_held == {b"a": 4} and alone_free == 0
    assert held_while_b_about == 2
    assert shared_held == {} and shared_free == 4 and shared_queued == 0  # cancelled waits leave nothing behind


def test_while_reads_are_in_flight_a_flood_holds_fewer_ingest_slots_and_another_key_still_finds_one():
    async def scenario():
        pools = {INGEST: front.Pool(INGEST, "unix:ingest.sock", 3), WEB: front.Pool(WEB, "unix:web.sock", 4)}
        front.reads_first(pools, 2)
        ingest, web = pools[INGEST].gate, pools[WEB].gate
        await web.acquire(b"reader")
        flood = [asyncio.ensure_future(ingest.acquire(b"a")) for _ in range(3)]
        await asyncio.sleep(0.05)
        held_while_reading = dict(ingest.held)
        web.release(b"reader")  # the reads are done: the flood gets the kept-back slots
        await asyncio.sleep(0.05)
        held_after_reading = dict(ingest.held)
        for _ in range(2):
            ingest.release(b"a")
        await web.acquire(b"reader")
        more = [asyncio.ensure_future(ingest.acquire(b"a")) for _ in range(2)]
        await asyncio.sleep(0.05)
        held_reading_again = dict(ingest.held)
        await asyncio.wait_for(ingest.acquire(b"b"), 1)  # B holds nothing: a kept-back slot is B's
        held_with_b = dict(ingest.held)
        for waiting in more:
            waiting.cancel()
        await asyncio.gather(*flood, *more, return_exceptions=True)
        return held_while_reading, held_after_reading, held_reading_again, held_with_b

    while_reading, after_reading, reading_again, with_b = asyncio.run(scenario())
    assert while_reading == {b"a": 1}
    assert after_reading == {b"a": 3}
    assert reading_again == {b"a": 1}
    assert with_b == {b"a": 1, b"b": 1}
