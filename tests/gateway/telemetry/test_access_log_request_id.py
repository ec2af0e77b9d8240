"""``x-request-id``: kept when present, generated (UUID4) and forwarded when absent."""

from __future__ import annotations

import os
import threading
import uuid

from gateway.telemetry.access_request_id import (
    RequestIdGenerator,
    ensure_request_id,
    new_request_id,
)


def is_uuid4(text: str) -> bool:
    u = uuid.UUID(text)
    return str(u) == text and u.version == 4 and u.variant == uuid.RFC_4122


def test_absent_id_is_generated_and_appended_for_upstream() -> None:
    headers = [(b"host", b"a"), (b"user-agent", b"curl")]
    rid = ensure_request_id(headers)
    assert is_uuid4(rid.decode())
    assert headers == [(b"host", b"a"), (b"user-agent", b"curl"), (b"x-request-id", rid)]


def test_present_id_is_preserved_and_headers_untouched() -> None:
    headers = [(b"x-request-id", b"abc-123"), (b"accept", b"*/*")]
    before = list(headers)
    assert ensure_request_id(headers) == b"abc-123"
    assert headers == before


def test_first_non_empty_id_wins_and_empty_one_counts_as_absent() -> None:
    headers = [(b"x-request-id", b""), (b"x-request-id", b"second")]
    assert ensure_request_id(headers) == b"second"
    headers = [(b"a", b"1"), (b"x-request-id", b""), (b"b", b"2")]
    rid = ensure_request_id(headers)
    assert is_uuid4(rid.decode())
    assert headers == [(b"a", b"1"), (b"x-request-id", rid), (b"b", b"2")]


def test_preserve_false_replaces_an_incoming_id_as_envoy_does_at_the_edge() -> None:
    headers = [(b"x-request-id", b"client-chosen"), (b"a", b"1"), (b"x-request-id", b"again")]
    rid = ensure_request_id(headers, preserve=False)
    assert rid != b"client-chosen" and is_uuid4(rid.decode())
    assert headers == [(b"a", b"1"), (b"x-request-id", rid)]


def test_generated_ids_are_valid_and_unique() -> None:
    ids = [new_request_id() for _ in range(20_000)]  # many blocks of random bytes
    assert len(set(ids)) == len(ids)
    assert all(is_uuid4(i) for i in ids[:500])
    # The version and variant nibbles are fixed; the others take every hex digit.
    assert {i[14] for i in ids} == {"4"}
    assert {i[19] for i in ids} == set("89ab")
    assert {i[0] for i in ids} == set("0123456789abcdef")


def test_ids_are_unique_across_threads() -> None:
    gen = RequestIdGenerator()
    results: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def work(out: list[str]) -> None:
        start.wait()
        for _ in range(20_000):
            out.append(gen())

    threads = [threading.Thread(target=work, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for r in results for i in r]
    assert len(everything) == 80_000
    assert len(set(everything)) == 80_000


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_request_id()  # the parent now holds a block of random bytes the child inherits
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            os.write(write_fd, "\n".join(new_request_id() for _ in range(64)).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        child = set(f.read().decode().split("\n"))
    os.waitpid(pid, 0)
    parent = {new_request_id() for _ in range(64)}
    assert len(child) == 64
    assert not child & parent
