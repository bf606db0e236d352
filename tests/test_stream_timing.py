"""The `first_byte_delay_ms` fault over real TCP: not one byte, not even the status line, before it."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from mockserver.app import MockApp
from tests.support import served_app

DELAY_S = 0.8
AUTH = {"Authorization": "Token alice-token"}


def raw_stream_request(port: int, fault: str | None) -> bytes:
    body = json.dumps({"input": "hello"}).encode()
    lines = [
        "POST /api/chat/stream/ HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Authorization: Token alice-token",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if fault:
        lines.append(f"X-Mock-Fault: {fault}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.slow
def test_first_byte_delay_holds_back_the_status_line_and_headers(app: MockApp) -> None:
    with served_app(app) as base:
        port = urlsplit(base).port or 80
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sent = time.monotonic()
            sock.sendall(raw_stream_request(port, f"first_byte_delay_ms={DELAY_S * 1000:.0f}"))
            sock.settimeout(DELAY_S - 0.2)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # nothing at all while the delay runs
            sock.settimeout(10)
            first = sock.recv(1)
            first_at = time.monotonic() - sent
            answer = first + read_all(sock)
    assert first_at >= DELAY_S - 0.01
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-type: application/x-ndjson" in head.lower()
    assert b'"assistant_message_uuid"' in body  # the stream itself is complete


@pytest.mark.slow
def test_without_the_fault_the_status_line_comes_at_once(app: MockApp) -> None:
    """The same raw request without the fault: the check above measures the fault, not the setup."""
    with served_app(app) as base:
        port = urlsplit(base).port or 80
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sent = time.monotonic()
            sock.sendall(raw_stream_request(port, None))
            first = sock.recv(1)
            first_at = time.monotonic() - sent
            answer = first + read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert first_at < DELAY_S


@pytest.mark.slow
def test_a_client_gone_during_the_delay_still_leaves_both_messages(app: MockApp) -> None:
    with served_app(app) as base:
        port = urlsplit(base).port or 80
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(raw_stream_request(port, "first_byte_delay_ms=600"))
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while True:
            rows = httpx.get(f"{base}/api/chat-messages/", headers=AUTH).json()
            if len(rows) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert [(m["role"], m["sequence_index"]) for m in rows] == [("user", 1), ("assistant", 2)]
