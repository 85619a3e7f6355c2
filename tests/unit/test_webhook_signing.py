"""Standard Webhooks signatures, checked with a few lines of HMAC written here (not the product's signer)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from api.delivery.signing import secret_key, signed_headers

SECRET = "whsec_" + base64.b64encode(b"a thirty-two byte secret key!!!!").decode()


def expected(raw_key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(raw_key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_the_headers_carry_id_timestamp_and_a_v1_signature_over_id_timestamp_and_body() -> None:
    body = b'{"id":"j1","status":"succeeded"}'

    headers = signed_headers(secret_key(SECRET), "msg_j1", 1_700_000_000, body)

    assert headers["webhook-id"] == "msg_j1"
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"] == expected(b"a thirty-two byte secret key!!!!", "msg_j1", "1700000000", body)
    assert headers["content-type"] == "application/json"


def test_a_secret_without_the_whsec_prefix_is_its_own_text() -> None:
    headers = signed_headers(secret_key("plain text secret"), "m", 1, b"{}")

    assert headers["webhook-signature"] == expected(b"plain text secret", "m", "1", b"{}")


def test_another_body_or_timestamp_gives_another_signature() -> None:
    key = secret_key(SECRET)
    first = signed_headers(key, "m", 1, b"{}")["webhook-signature"]

    assert signed_headers(key, "m", 2, b"{}")["webhook-signature"] != first
    assert signed_headers(key, "m", 1, b"{ }")["webhook-signature"] != first
