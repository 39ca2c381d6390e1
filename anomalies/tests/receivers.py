"""Receivers that misbehave at the socket level (dripping, cutting answers short), which an HTTP
server library will not do: real loopback TCP servers, each connection answered in a thread."""
import socket
import ssl
import threading


class RawReceiver:
    """A TCP server on `host` that reads each request's head and body, keeps them in `requests`, then
    lets `answer(connection, stop)` write whatever it likes; `stop` is set when the test ends."""

    def __init__(self, answer, *, host="127.0.0.1", port=0, tls: ssl.SSLContext | None = None):
        self.answer, self.tls = answer, tls
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self.server = socket.create_server((host, port))
        self.server.settimeout(0.1)  # so that the accept loop sees `stop`
        self.host, self.port = host, self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path="/", *, name=None, scheme="http") -> str:
        return f"{scheme}://{name or self.host}:{self.port}{path}"

    def close(self):
        self.stop.set()
        self.server.close()

    def _serve(self):
        while not self.stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:  # the accept timeout, or closed
                continue
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection):
        try:
            connection.settimeout(5)
            if self.tls:
                connection = self.tls.wrap_socket(connection, server_side=True)
            self.requests.append(_request(connection))
            self.answer(connection, self.stop)
        except OSError:  # the client hung up (or refused our certificate): the test looks at its side
            pass
        finally:
            connection.close()


def _request(connection) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


# A drip lasts 10 s at most, so that a client without a deadline fails a test instead of hanging it.
DRIPS, DRIP_SECONDS = 50, 0.2


def drip_body(connection, stop):
    """Headers at once, then one body byte every 0.2 s: each read is quick, the answer is not."""
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(DRIPS):
        if stop.wait(DRIP_SECONDS):
            return
        connection.sendall(b"x")


def drip_headers(connection, stop):
    """The status line, then one header line every 0.2 s."""
    connection.sendall(b"HTTP/1.1 200 OK\r\n")
    for _ in range(DRIPS):
        if stop.wait(DRIP_SECONDS):
            return
        connection.sendall(b"X-Drip: 1\r\n")


def truncated(connection, stop):
    """A body shorter than its Content-Length, then the connection closed."""
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")


def no_content(connection, stop):
    connection.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
