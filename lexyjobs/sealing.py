"""Secrets the panel stores in the database (an alert target's URL or signing secret), sealed with
a key derived from the process's secret key (``LEXYJOBS_SECRET_KEY`` or the generated key file):
a database dump or backup alone does not reveal them.

Standard library only: encrypt-then-MAC with HMAC-SHA256 as the pseudo-random function. The
keystream is HMAC(k_enc, nonce ‖ counter) in 32-byte blocks, XORed with the text; the tag is
HMAC(k_mac, version ‖ nonce ‖ ciphertext), checked in constant time before anything is decrypted.
The sealed form is ``v1.`` + URL-safe base64 of nonce (16) ‖ ciphertext ‖ tag (32).

A sealed value opens only with the key it was sealed with: after the secret key changes,
``open_sealed`` raises ``Unreadable`` and the panel asks for the secret again."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

PREFIX = "v1."
NONCE_BYTES = 16
TAG_BYTES = 32


class Unreadable(ValueError):
    """The sealed value was sealed with another key, or changed."""


def _keys(secret_key: str) -> tuple[bytes, bytes]:
    root = hashlib.sha256(b"lexyjobs sealing v1\0" + secret_key.encode()).digest()
    return (hmac.new(root, b"encrypt", hashlib.sha256).digest(), hmac.new(root, b"authenticate", hashlib.sha256).digest())


def _stream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest()
              for counter in range((length + 31) // 32))
    return b"".join(blocks)[:length]


def seal(text: str, secret_key: str) -> str:
    enc, mac = _keys(secret_key)
    nonce = os.urandom(NONCE_BYTES)
    data = text.encode()
    cipher = bytes(a ^ b for a, b in zip(data, _stream(enc, nonce, len(data))))
    tag = hmac.new(mac, PREFIX.encode() + nonce + cipher, hashlib.sha256).digest()
    return PREFIX + base64.urlsafe_b64encode(nonce + cipher + tag).decode()


def open_sealed(sealed: str, secret_key: str) -> str:
    if not sealed.startswith(PREFIX):
        raise Unreadable("not a sealed value")
    try:
        raw = base64.urlsafe_b64decode(sealed[len(PREFIX):].encode())
    except (binascii.Error, ValueError):
        raise Unreadable("not a sealed value") from None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise Unreadable("not a sealed value")
    nonce, cipher, tag = raw[:NONCE_BYTES], raw[NONCE_BYTES:-TAG_BYTES], raw[-TAG_BYTES:]
    enc, mac = _keys(secret_key)
    if not hmac.compare_digest(tag, hmac.new(mac, PREFIX.encode() + nonce + cipher, hashlib.sha256).digest()):
        raise Unreadable("sealed with another secret key")
    data = bytes(a ^ b for a, b in zip(cipher, _stream(enc, nonce, len(cipher))))
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise Unreadable("not a sealed text") from None
