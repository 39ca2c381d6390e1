"""Outbound requests to places tenants name (webhooks, Slack), made safe: http(s) only, public
addresses only (unless WEBHOOK_ALLOW_PRIVATE_NETWORKS), short timeouts, no redirects, a cap on
what is read back. And email through Django's mail backends."""
from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMessage

CONNECT_TIMEOUT, READ_TIMEOUT = 3.0, 10.0
MAX_RESPONSE_BYTES = 64 * 1024
EXCERPT_CHARS = 500


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
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port or 443, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeDestination(f"the host name does not resolve ({error})") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not _public(ip):
            raise UnsafeDestination(f"{parts.hostname} resolves to {ip}, a private or reserved address "
                                    "(set WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to allow it)")


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
    """POST `body`; ok on a 2xx. Redirects are not followed (a 3xx is a failure): a redirect could lead
    anywhere, a private address included."""
    began = time.monotonic()
    try:
        destination_check(url)
        with requests.post(url, data=body, headers={"Content-Type": "application/json", **headers},
                           timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False, stream=True) as response:
            ok = 200 <= response.status_code < 300
            excerpt, unreadable = _answer_excerpt(response)
            error = "" if ok else f"answered {response.status_code}" + (f"; {unreadable}" if unreadable else "")
            return Outcome(ok, response.status_code, _ms(began), excerpt, error)
    except UnsafeDestination as error:
        return Outcome(False, None, _ms(began), error=f"refused: {error}")
    except Exception as error:  # requests', urllib3's and the socket's alike: whatever comes back is a failed attempt
        return Outcome(False, None, _ms(began), error=printable(f"{type(error).__name__}: {str(error)[:300]}"))


def _answer_excerpt(response) -> tuple[str, str]:
    """The start of the answer as text, and why it could not be read (a body that lies about its
    encoding, a truncated one): the status is the answer either way."""
    try:
        content = response.raw.read(MAX_RESPONSE_BYTES, decode_content=True) or b""
    except Exception as error:
        return "", printable(f"the body could not be read ({type(error).__name__})")
    return printable(content.decode("utf-8", "replace")[:EXCERPT_CHARS]), ""


def printable(text: str) -> str:
    """Text a PostgreSQL text column takes: no NUL, no lone surrogate."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def send_email(to: str, subject: str, text: str) -> Outcome:
    began = time.monotonic()
    try:
        EmailMessage(subject=subject, body=text, to=[to]).send(fail_silently=False)
    except Exception as error:  # smtplib's, socket's and the backends' errors alike: a failed attempt
        return Outcome(False, None, _ms(began), error=printable(f"{type(error).__name__}: {str(error)[:300]}"))
    return Outcome(True, None, _ms(began))


def _ms(began: float) -> int:
    return int((time.monotonic() - began) * 1000)
