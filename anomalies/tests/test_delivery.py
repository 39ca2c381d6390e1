"""Outbound webhook attempts against real loopback receivers: one deadline for the whole attempt
(issue 22, finding 7), and the connection made to the address that was checked (finding 8)."""
import socket
import ssl
import subprocess
import time

import pytest

from anomalies import delivery
from anomalies.delivery import post_json
from anomalies.tests.receivers import drip_body, drip_headers, no_content

PUBLIC = "93.184.216.34"


@pytest.fixture
def deadline(settings):
    """A 1 s deadline: a drip receiver is cut off as at the default 13 s, without waiting 13 s."""
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "WEBHOOK_DEADLINE_SECONDS": 1.0}
    return 1.0


@pytest.fixture
def resolver(monkeypatch):
    """Name resolution for made-up names: `answers[name]` is the list of addresses given to the
    successive look-ups (the last one repeats); `asked` records them. Other names resolve as usual."""
    real, answers, asked = socket.getaddrinfo, {}, []

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        given = answers[host][min(len(asked), len(answers[host]) - 1)]
        asked.append(given)
        return real(given, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, asked


@pytest.mark.parametrize("answer, status_code", [(drip_body, 200), (drip_headers, None)])
def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline(settings, deadline, raw_receiver, answer,
                                                                     status_code):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    receiver = raw_receiver(answer)
    began = time.monotonic()
    outcome = post_json(receiver.url("/drip"), b'{"type": "test"}', {})
    took = time.monotonic() - began
    assert (outcome.ok, outcome.status_code, outcome.error) == (False, status_code, "no complete answer within 1 s")
    assert deadline <= took < deadline + 1, took  # every read was short: before, each had 10 s of its own
    assert receiver.requests[0].startswith(b"POST /drip HTTP/1.1\r\n")


def test_a_name_that_rebinds_to_loopback_after_the_check_is_never_connected_to(settings, deadline, resolver,
                                                                               raw_receiver):
    """A rebinding DNS server (TTL 0: a public address for the check, 127.0.0.1 for the connection)
    cannot run here, so its answers are simulated by replacing socket.getaddrinfo for its one name.
    The internal receiver on loopback is real, and must hear nothing."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    internal = raw_receiver(no_content)
    answers, asked = resolver
    answers["rebind.example"] = [PUBLIC, "127.0.0.1"]
    outcome = post_json(internal.url("/rebind-proof", name="rebind.example"), b"{}", {})
    assert internal.requests == []
    assert asked == [PUBLIC]  # resolved once: the connection went to the checked address (which has no receiver)
    assert not outcome.ok


def test_the_connection_goes_to_the_address_resolved_once_and_the_host_header_keeps_the_name(settings, resolver,
                                                                                              raw_receiver):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # the address is not checked then, but still pinned
    first = raw_receiver(no_content, host="127.0.0.1")
    second = raw_receiver(no_content, host="127.0.0.2", port=first.port)
    answers, asked = resolver
    answers["hooks.example"] = ["127.0.0.1", "127.0.0.2"]
    outcome = post_json(first.url("/hook?k=v", name="hooks.example"), b"{}", {"webhook-id": "msg_1"})
    assert (outcome.ok, outcome.status_code, asked) == (True, 204, ["127.0.0.1"])
    assert second.requests == []
    [request] = first.requests
    assert request.startswith(b"POST /hook?k=v HTTP/1.1\r\n") and request.endswith(b"\r\n\r\n{}")
    assert f"Host: hooks.example:{first.port}\r\n".encode() in request and b"webhook-id: msg_1\r\n" in request


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA and a certificate it signed for hooks.example (openssl, as on every Debian machine)."""
    folder = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
    subprocess.run(["openssl", "req", "-x509", *ec, "-keyout", folder / "ca.key", "-out", folder / "ca.pem",
                    "-subj", "/CN=CloudWatchDog test CA"], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-x509", *ec, "-keyout", folder / "hook.key", "-out", folder / "hook.pem",
                    "-subj", "/CN=hooks.example", "-addext", "subjectAltName=DNS:hooks.example",
                    "-CA", folder / "ca.pem", "-CAkey", folder / "ca.key"], check=True, capture_output=True)
    return folder


@pytest.fixture
def https_receiver(settings, monkeypatch, resolver, raw_receiver, certificates):
    """Make receivers speaking TLS with the certificate for hooks.example (its CA trusted), which
    hooks.example and other.example resolve to; each records the SNI names it is sent in `names`."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    monkeypatch.setattr(delivery, "CA_CERTS", str(certificates / "ca.pem"))
    answers, _ = resolver
    answers["hooks.example"] = answers["other.example"] = ["127.0.0.1"]

    def make(answer):
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(certificates / "hook.pem", certificates / "hook.key")
        receiver = raw_receiver(answer, tls=tls)
        receiver.names = []
        tls.sni_callback = lambda sock, name, context: receiver.names.append(name)
        return receiver

    return make


def test_https_to_the_pinned_address_sends_the_name_for_sni_and_checks_the_certificate_against_it(https_receiver):
    receiver = https_receiver(no_content)
    outcome = post_json(receiver.url("/tls", name="hooks.example", scheme="https"), b"{}", {})
    assert (outcome.ok, outcome.status_code, receiver.names) == (True, 204, ["hooks.example"])
    assert f"Host: hooks.example:{receiver.port}\r\n".encode() in receiver.requests[0]

    # The same server under another name: its certificate is not for that name.
    refused = post_json(receiver.url("/tls", name="other.example", scheme="https"), b"{}", {})
    assert not refused.ok and "CERTIFICATE_VERIFY_FAILED" in refused.error and "other.example" in refused.error
    assert len(receiver.requests) == 1


def test_a_receiver_that_drips_over_tls_is_cut_off_at_the_deadline_too(deadline, https_receiver):
    receiver = https_receiver(drip_body)
    began = time.monotonic()
    outcome = post_json(receiver.url("/drip", name="hooks.example", scheme="https"), b"{}", {})
    took = time.monotonic() - began
    assert (outcome.ok, outcome.status_code, outcome.error) == (False, 200, "no complete answer within 1 s")
    assert deadline <= took < deadline + 1, took
