"""Outbound requests to places tenants name (webhooks, Slack), made safe: http(s) only, public
addresses only (unless WEBHOOK_ALLOW_PRIVATE_NETWORKS), a deadline per attempt, no redirects, a cap
on what is read back. And email through Django's mail backends.

Two of these guarantees take more than a library's options (review of 2026-12-03, findings 7, 8):
- The deadline (WEBHOOK_DEADLINE_SECONDS, 13 s) covers the whole attempt: connecting, TLS, sending,
  the answer's headers and its capped body. A socket's timeout counts per read, so a receiver that
  sent a byte every few seconds held a Celery worker for over a minute; here every read and write
  of the attempt's socket waits at most what is left of the deadline (`_Bounded`): no thread, no
  signal, and TLS alike (the ssl module's reads take the socket's timeout as a total).
- The connection goes to an address that was checked: the host is resolved once, each address
  checked, and the socket connected to one of them by number (`_Pinned`), while the Host header,
  SNI and the certificate check keep the name. A name that answers a public address to the check
  and 127.0.0.1 to the connection (DNS rebinding) is never asked twice.
"""
from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import time
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
from django.conf import settings
from django.core.mail import EmailMessage
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import NewConnectionError
from urllib3.util import parse_url

CONNECT_TIMEOUT = 3.0
MAX_RESPONSE_BYTES = 64 * 1024
EXCERPT_CHARS = 500
_DEFAULT_PORTS = {"http": 80, "https": 443}
CA_CERTS = certifi.where()  # the roots requests trusted before; a test trusts its own CA here

# When the current attempt must be over (time.monotonic()); set by post_json for its sockets.
_deadline: ContextVar[float] = ContextVar("delivery_deadline")


class UnsafeDestination(ValueError):
    """A URL CloudWatchDog will not send to; the message says why."""


@dataclass
class Outcome:
    ok: bool
    status_code: int | None
    latency_ms: int
    excerpt: str = ""
    error: str = ""


def destination_check(url: str, *, resolve: bool = True) -> None:
    """Raise UnsafeDestination unless `url` is http(s) to a host whose every address is public
    (private, loopback, link-local and other reserved ranges are refused unless the environment
    sets WEBHOOK_ALLOW_PRIVATE_NETWORKS=true)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeDestination("only http:// and https:// URLs with a host name are allowed")
    if parts.username or parts.password:
        raise UnsafeDestination("credentials in the URL are not allowed; put a token in the path or query")
    try:
        port = parts.port
    except ValueError:
        raise UnsafeDestination("the port must be a number from 1 to 65535") from None
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS or not resolve:
        return
    _addresses_checked(parts.hostname, port or 443)


def _addresses_checked(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to now, in the resolver's order; UnsafeDestination unless every
    one is public (or WEBHOOK_ALLOW_PRIVATE_NETWORKS)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeDestination(f"the host name does not resolve ({error})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS and not _public(ip):
            raise UnsafeDestination(f"{host} resolves to {ip}, a private or reserved address "
                                    "(set WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to allow it)")
    return addresses


# IPv6 forms that carry an IPv4 address a router may reach: NAT64 (64:ff9b::/96), 6to4 (2002::/16),
# IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d). Public only if that address is.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _public(ip) -> bool:
    if ip.is_multicast or not ip.is_global:
        return False
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and (ip in _NAT64 or int(ip) >> 32 == 0):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _public(embedded)
    return True


def post_json(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """POST `body`; ok on a 2xx answered in full within WEBHOOK_DEADLINE_SECONDS. Redirects are not
    followed (a 3xx is a failure): a redirect could lead anywhere, a private address included."""
    began = time.monotonic()
    seconds = settings.CLOUDWATCHDOG["WEBHOOK_DEADLINE_SECONDS"]
    token = _deadline.set(began + seconds)
    late = f"no complete answer within {seconds:g} s"
    try:
        destination_check(url, resolve=False)
        target = parse_url(url)
        addresses = _addresses_checked(target.host.strip("[]"), target.port or _DEFAULT_PORTS[target.scheme])
        with _pool(target, addresses, seconds) as pool, pool.urlopen(
                "POST", target.request_uri, body=body, headers={"Content-Type": "application/json", **headers},
                redirect=False, retries=False, preload_content=False) as response:
            excerpt, unreadable = _answer_excerpt(response)
            if time.monotonic() >= began + seconds:  # cut off: the status alone is no complete answer
                return Outcome(False, response.status, _ms(began), excerpt, late)
            ok = 200 <= response.status < 300
            error = "" if ok else f"answered {response.status}" + (f"; {unreadable}" if unreadable else "")
            return Outcome(ok, response.status, _ms(began), excerpt, error)
    except UnsafeDestination as error:
        return Outcome(False, None, _ms(began), error=f"refused: {error}")
    except Exception as error:  # urllib3's, ssl's and the socket's alike: whatever comes back is a failed attempt
        if time.monotonic() >= began + seconds:
            return Outcome(False, None, _ms(began), error=late)
        return Outcome(False, None, _ms(began), error=printable(f"{type(error).__name__}: {str(error)[:300]}"))
    finally:
        _deadline.reset(token)


def _answer_excerpt(response) -> tuple[str, str]:
    """The start of the answer as text, and why it could not be read (a body that lies about its
    encoding, a truncated one): the status is the answer either way."""
    try:
        content = response.read(MAX_RESPONSE_BYTES, decode_content=True) or b""
    except Exception as error:
        return "", printable(f"the body could not be read ({type(error).__name__})")
    return printable(content.decode("utf-8", "replace")[:EXCERPT_CHARS]), ""


def printable(text: str) -> str:
    """Text a PostgreSQL text column takes: no NUL, no lone surrogate."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _left() -> float:
    """Seconds left of the current attempt; TimeoutError once there are none."""
    left = _deadline.get() - time.monotonic()
    if left <= 0:
        raise TimeoutError("the attempt's deadline has passed")
    return left


class _Bounded:
    """Socket calls that wait at most what is left of the attempt (a socket's own timeout counts per
    call, and a dripping receiver makes each call short)."""
    __slots__ = ()

    def recv(self, *args):
        self.settimeout(_left())
        return super().recv(*args)

    def recv_into(self, *args):
        self.settimeout(_left())
        return super().recv_into(*args)

    def send(self, *args):
        self.settimeout(_left())
        return super().send(*args)

    def sendall(self, *args):
        self.settimeout(_left())
        return super().sendall(*args)


class _BoundedSocket(_Bounded, socket.socket):
    pass


class _BoundedSSLSocket(_Bounded, ssl.SSLSocket):
    pass


class _Pinned:
    """A connection to the addresses that were checked, never to what the name resolves to now; the
    name (self.host) still goes in the Host header, SNI and the certificate check."""

    def __init__(self, *args, addresses: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.addresses = addresses

    def _new_conn(self) -> socket.socket:
        failures = []
        for address in self.addresses:  # in the resolver's order, as socket.create_connection tries them
            sock = _BoundedSocket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.settimeout(min(CONNECT_TIMEOUT, _left()))
                sock.connect((address, self.port))
            except OSError as error:
                sock.close()
                failures.append(f"{address}: {error}")
                continue
            for option in self.socket_options or ():  # urllib3's TCP_NODELAY
                sock.setsockopt(*option)
            sock.settimeout(min(CONNECT_TIMEOUT, _left()))  # the TLS handshake's, in all, as it had before
            return sock
        raise NewConnectionError(self, "could not connect to " + "; ".join(failures))


class _PinnedHTTPConnection(_Pinned, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_Pinned, HTTPSConnection):
    pass


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


def _pool(target, addresses: list[str], seconds: float) -> HTTPConnectionPool:
    """A one-connection pool for `target` whose connection goes to `addresses`."""
    if target.scheme == "http":
        return _PinnedHTTPPool(target.host, target.port, timeout=seconds, maxsize=1, addresses=addresses)
    return _PinnedHTTPSPool(target.host, target.port, timeout=seconds, maxsize=1, ssl_context=_tls_context(CA_CERTS),
                            addresses=addresses)


@functools.lru_cache(maxsize=1)  # loading the roots takes 80 ms; the context is safe to share
def _tls_context(ca_certs: str) -> ssl.SSLContext:
    """The stdlib's defaults: the certificate checked against the name urllib3 gives (the host's)."""
    context = ssl.create_default_context(cafile=ca_certs)
    context.sslsocket_class = _BoundedSSLSocket
    return context


def send_email(to: str, subject: str, text: str) -> Outcome:
    began = time.monotonic()
    try:
        EmailMessage(subject=subject, body=text, to=[to]).send(fail_silently=False)
    except Exception as error:  # smtplib's, socket's and the backends' errors alike: a failed attempt
        return Outcome(False, None, _ms(began), error=printable(f"{type(error).__name__}: {str(error)[:300]}"))
    return Outcome(True, None, _ms(began))


def _ms(began: float) -> int:
    return int((time.monotonic() - began) * 1000)
