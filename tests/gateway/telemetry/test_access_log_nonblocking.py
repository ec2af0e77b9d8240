"""Logging never blocks the event loop: with a writer stuck on a slow or full destination,
``log()`` returns at once, the overflow is dropped and counted, and ``close()`` still writes
everything that was queued once the destination moves again."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

from gateway.telemetry.access_log import AccessLogEntry, AccessLogger
from gateway.telemetry.access_sink import FileSink

# Far above the cost of a log() call (about a microsecond) and far below a blocked write
# (forever): a call that waited on the writer could not pass.
PER_CALL_BOUND_S = 0.05


def entry(path: str) -> AccessLogEntry:
    return AccessLogEntry(start_time="2024-05-01T00:00:00.000Z", method="GET", path=path,
                          protocol="HTTP/1.1", response_code=200, authority="a",
                          user_agent="x" * 400)  # fmt: skip


def paths_in(data: bytes) -> list[str]:
    return [json.loads(line)["path"] for line in data.splitlines()]


class BlockingSink:
    """A destination whose writes wait until the test releases them."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.data = b""

    def write(self, data: bytes) -> None:
        self.entered.set()
        assert self.release.wait(60), "the test never released the sink"
        self.data += data

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_blocked_writer_does_not_block_log_and_drops_are_counted() -> None:
    sink = BlockingSink()
    logger = AccessLogger(sink, max_queue=4)
    logger.log(entry("/0"))
    assert sink.entered.wait(10)  # the writer now holds /0 and is stuck in write()

    slowest = 0.0
    for i in range(1, 101):
        t = time.perf_counter()
        logger.log(entry(f"/{i}"))
        slowest = max(slowest, time.perf_counter() - t)
    assert slowest < PER_CALL_BOUND_S
    assert logger.queued == 4
    assert logger.dropped == 96
    assert logger.written == 0

    sink.release.set()
    assert logger.close(timeout_s=10)
    assert paths_in(sink.data) == ["/0", "/1", "/2", "/3", "/4"]
    assert logger.written == 5 and logger.dropped == 96


def test_close_gives_up_after_its_timeout_when_the_sink_stays_blocked() -> None:
    sink = BlockingSink()
    logger = AccessLogger(sink)
    logger.log(entry("/0"))
    assert sink.entered.wait(10)
    assert logger.close(timeout_s=0.05) is False
    sink.release.set()
    assert logger.close(timeout_s=10) is True
    assert paths_in(sink.data) == ["/0"]


async def test_a_pipe_nobody_reads_never_stalls_the_event_loop() -> None:
    read_fd, write_fd = os.pipe()  # 64 KiB of buffer, then write() blocks
    logger = AccessLogger(FileSink.for_fd(write_fd, owned=True), max_queue=200)
    ticks = 0
    stop = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    beat = asyncio.create_task(heartbeat())
    total = 5000  # about 2.5 MB: far more than the pipe and the queue can hold
    slowest = 0.0
    for i in range(total):
        t = time.perf_counter()
        logger.log(entry(f"/{i}"))
        slowest = max(slowest, time.perf_counter() - t)
        if i % 100 == 0:
            await asyncio.sleep(0)
    assert slowest < PER_CALL_BOUND_S
    assert logger.dropped > 0  # the writer is stuck on the full pipe
    ticks_before = ticks
    await asyncio.sleep(0.01)
    assert ticks > ticks_before  # the loop still runs
    stop.set()
    await beat

    # Someone starts reading: everything that was queued reaches the pipe, in order.
    chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: chunks.extend(iter(lambda: os.read(read_fd, 65536), b""))
    )
    reader.start()
    assert await logger.aclose(timeout_s=30)
    reader.join(10)
    os.close(read_fd)
    paths = paths_in(b"".join(chunks))
    assert len(paths) == logger.written == total - logger.dropped
    assert paths == sorted(paths, key=lambda p: int(p[1:]))
    assert paths[0] == "/0"
