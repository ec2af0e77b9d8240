"""Sampling: none at 0 %, all at 100 %, an injected random source in between, and errors
(5xx or a response flag) kept whatever the percentage unless that is turned off."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config.snapshot import AccessLog
from gateway.telemetry.access_log import AccessLogEntry, AccessLogError, AccessLogger


class ListSink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass

    def paths(self) -> list[str]:
        return [json.loads(line)["path"] for line in self.data.splitlines()]


def entry(path: str, code: int = 200, flags: str = "-") -> AccessLogEntry:
    return AccessLogEntry(start_time="2024-05-01T00:00:00.000Z", method="GET", path=path,
                          protocol="HTTP/1.1", response_code=code, response_flags=flags,
                          authority="a")  # fmt: skip


def run(percent: float, entries: list[AccessLogEntry], rand: Callable[[], float],
        always_log_errors: bool = True) -> list[str]:  # fmt: skip
    sink = ListSink()
    logger = AccessLogger(sink, sampling_percent=percent, rand=rand,
                          always_log_errors=always_log_errors)  # fmt: skip
    for e in entries:
        logger.log(e)
    assert logger.close(timeout_s=10)
    return sink.paths()


def never_called() -> float:
    raise AssertionError("no random number is needed at 100 %")


def test_zero_percent_logs_no_successful_request() -> None:
    assert run(0, [entry(f"/{i}") for i in range(50)], rand=lambda: 0.0) == []


def test_hundred_percent_logs_everything_without_drawing() -> None:
    paths = [f"/{i}" for i in range(50)]
    assert run(100, [entry(p) for p in paths], rand=never_called) == paths


def test_middle_percentage_follows_the_random_source() -> None:
    draws = itertools.cycle([0.05, 0.25, 0.45, 0.65, 0.85, 0.3999, 0.4])
    # 40 %: a request is kept when draw * 100 < 40.
    paths = run(40, [entry(f"/{i}") for i in range(7)], rand=lambda: next(draws))
    assert paths == ["/0", "/1", "/5"]


def test_middle_percentage_keeps_about_that_share() -> None:
    rng = random.Random(7)
    kept = run(25, [entry(f"/{i}") for i in range(4000)], rand=rng.random)
    assert 900 < len(kept) < 1100


def test_errors_and_flagged_requests_are_always_logged() -> None:
    entries = [entry("/ok"), entry("/503", 503), entry("/404", 404),
               entry("/uo", 200, "UO"), entry("/nr", 404, "NR")]  # fmt: skip
    assert run(0, entries, rand=lambda: 0.99) == ["/503", "/uo", "/nr"]


def test_errors_are_sampled_too_when_asked() -> None:
    entries = [entry("/503", 503), entry("/uo", 200, "UO")]
    assert run(0, entries, rand=lambda: 0.0, always_log_errors=False) == []


def test_wants_and_emit_let_the_caller_skip_building_entries() -> None:
    sink = ListSink()
    draws = iter([0.9, 0.1])
    logger = AccessLogger(sink, sampling_percent=50, rand=lambda: next(draws))
    assert logger.wants(200, "-") is False
    assert logger.wants(200, "-") is True
    assert logger.wants(502, "-") is True  # an error needs no draw
    logger.emit(entry("/emitted"))
    assert logger.close(timeout_s=10)
    assert sink.paths() == ["/emitted"]


@pytest.mark.parametrize("bad", [-1, 100.5, float("nan"), float("inf")])
def test_bad_percentage_is_refused_by_name(bad: float) -> None:
    with pytest.raises(AccessLogError, match="samplingPercentage"):
        AccessLogger(ListSink(), sampling_percent=bad)


def test_config_percentage_is_used(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    draws = itertools.cycle([0.1, 0.9])
    logger = AccessLogger.from_config(AccessLog(path=str(path), sampling_percent=50),
                                      rand=lambda: next(draws))  # fmt: skip
    assert logger is not None
    for i in range(4):
        logger.log(entry(f"/{i}"))
    assert logger.close(timeout_s=10)
    assert [json.loads(x)["path"] for x in path.read_bytes().splitlines()] == ["/0", "/2"]


def test_no_config_means_no_logger() -> None:
    assert AccessLogger.from_config(None) is None
