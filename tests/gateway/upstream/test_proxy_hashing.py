"""request_hash: the consistentHash key of a request, and the cookie the proxy may set.

Header, cookie and source-IP keys must be the same for the same input and differ for
different input; a cookie with a ``ttl`` that the request lacks is made up and returned as a
``Set-Cookie`` value whose own value hashes to the key used, so the client's next request
lands on the same endpoint. Requests without a key get a random one.
"""

from __future__ import annotations

import random
import re

import pytest

from gateway.codec.messages import RequestHead
from gateway.config.snapshot import ConsistentHash, HashCookie
from gateway.filters.base import RequestContext
from gateway.proxy.hashing import request_hash
from gateway.upstream.lb import hash_key

RANDOM_KEY = 0x5EED


@pytest.fixture(autouse=True)
def fixed_random(monkeypatch: pytest.MonkeyPatch) -> None:
    """The no-key fallback draws from ``random``: pin it to tell it apart."""
    monkeypatch.setattr(random, "getrandbits", lambda bits: RANDOM_KEY)


def ctx(*headers: tuple[bytes, bytes], address: str = "192.0.2.7") -> RequestContext:
    head = RequestHead("GET", "/", "svc", list(headers))
    return RequestContext(request=head, downstream_address=address)


HEADER = ConsistentHash(header="x-user")


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ([(b"x-user", b"alice")], hash_key(b"alice")),
        ([(b"accept", b"*/*"), (b"x-user", b"bob")], hash_key(b"bob")),
        ([(b"x-user", b"a"), (b"x-user", b"b")], hash_key(b"a")),  # the first value
        ([(b"x-user", b"")], hash_key(b"")),  # present but empty is still a key
        ([(b"x-other", b"alice")], RANDOM_KEY),  # absent: balanced, not pinned
        ([], RANDOM_KEY),
    ],
)
def test_header_key(headers: list[tuple[bytes, bytes]], key: int) -> None:
    assert request_hash(HEADER, ctx(*headers)) == (key, None)


def test_header_keys_differ_by_value() -> None:
    a = request_hash(HEADER, ctx((b"x-user", b"alice")))[0]
    b = request_hash(HEADER, ctx((b"x-user", b"bob")))[0]
    assert a != b


COOKIE = ConsistentHash(cookie=HashCookie(name="user", path="/", ttl_s=3600.0))


@pytest.mark.parametrize(
    ("cookie_headers", "value"),
    [
        ([b"user=abc"], b"abc"),
        ([b"a=1; user=abc; b=2"], b"abc"),
        ([b"a=1;user=abc"], b"abc"),
        ([b"xuser=1; user=2"], b"2"),  # a name that only ends like it does not count
        ([b"a=1", b"user=second-header"], b"second-header"),
        ([b"user=x=y"], b"x=y"),
    ],
)
def test_cookie_present(cookie_headers: list[bytes], value: bytes) -> None:
    c = ctx(*((b"cookie", h) for h in cookie_headers))
    assert request_hash(COOKIE, c) == (hash_key(value), None)


def test_missing_cookie_with_ttl_is_made_up_and_set() -> None:
    key, set_cookie = request_hash(COOKIE, ctx((b"cookie", b"other=1")))
    assert set_cookie is not None
    m = re.fullmatch(rb"user=([0-9a-f]{16}); Path=/; Max-Age=3600; HttpOnly", set_cookie)
    assert m, set_cookie
    assert key == hash_key(m.group(1))
    # The client sends it back: same key, so the same endpoint, and no new cookie.
    assert request_hash(COOKIE, ctx((b"cookie", b"user=" + m.group(1)))) == (key, None)
    # Two clients without the cookie get different ones.
    _, other = request_hash(COOKIE, ctx())
    assert other is not None and other != set_cookie


SID = rb"sid=[0-9a-f]{16}; "


@pytest.mark.parametrize(
    ("cookie", "pattern"),
    [
        (
            HashCookie(name="sid", path="/api", ttl_s=60.5),
            SID + rb"Path=/api; Max-Age=60; HttpOnly",
        ),
        (HashCookie(name="sid", ttl_s=10.0), SID + rb"Max-Age=10; HttpOnly"),
        # ttl 0: a session cookie (Envoy), no Max-Age.
        (HashCookie(name="sid", path="/", ttl_s=0.0), SID + rb"Path=/; HttpOnly"),
    ],
)
def test_set_cookie_attributes(cookie: HashCookie, pattern: bytes) -> None:
    _, set_cookie = request_hash(ConsistentHash(cookie=cookie), ctx())
    assert set_cookie is not None and re.fullmatch(pattern, set_cookie), set_cookie


def test_missing_cookie_without_ttl_is_not_made_up() -> None:
    config = ConsistentHash(cookie=HashCookie(name="user"))
    assert request_hash(config, ctx((b"cookie", b"other=1"))) == (RANDOM_KEY, None)


SOURCE_IP = ConsistentHash(use_source_ip=True)


def test_source_ip_key() -> None:
    a1 = request_hash(SOURCE_IP, ctx(address="192.0.2.7"))
    a2 = request_hash(SOURCE_IP, ctx((b"x-user", b"z"), address="192.0.2.7"))
    b = request_hash(SOURCE_IP, ctx(address="2001:db8::1"))
    assert a1 == a2 == (hash_key(b"192.0.2.7"), None)
    assert b == (hash_key(b"2001:db8::1"), None)
    assert request_hash(SOURCE_IP, ctx(address="")) == (RANDOM_KEY, None)


def test_no_key_configured_is_random() -> None:
    assert request_hash(ConsistentHash(), ctx((b"x-user", b"a"))) == (RANDOM_KEY, None)


def test_the_random_fallback_really_varies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    keys = {request_hash(HEADER, ctx())[0] for _ in range(20)}
    assert len(keys) == 20
