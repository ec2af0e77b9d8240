"""Where lines go: a file in append mode, standard output; reopening after rotation; what
happens on write, encode and open errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config.snapshot import AccessLog
from gateway.telemetry.access_log import AccessLogEntry, AccessLogError, AccessLogger
from gateway.telemetry.access_sink import FileSink, _pieces

ROOT = Path(__file__).resolve().parents[3]


def entry(path: str, **extra: object) -> AccessLogEntry:
    return AccessLogEntry(start_time="2024-05-01T00:00:00.000Z", method="GET", path=path,
                          protocol="HTTP/1.1", response_code=200, authority="a",
                          **extra)  # type: ignore[arg-type]  # fmt: skip


def paths_in(data: bytes) -> list[str]:
    assert not data or data.endswith(b"\n")
    return [json.loads(line)["path"] for line in data.splitlines()]


def open_logger(path: Path) -> AccessLogger:
    logger = AccessLogger.from_config(AccessLog(path=str(path)))
    assert logger is not None
    return logger


def test_file_output_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b'{"path":"/earlier"}\n')
    logger = open_logger(path)
    for i in range(1000):
        logger.log(entry(f"/{i}"))
    assert logger.close(timeout_s=10)
    assert paths_in(path.read_bytes()) == ["/earlier", *(f"/{i}" for i in range(1000))]
    assert logger.written == 1000 and logger.dropped == 0 and logger.failed == 0


def test_flush_writes_what_is_queued_without_closing(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    logger = open_logger(path)
    logger.log(entry("/a"))
    assert logger.flush(timeout_s=10)
    assert paths_in(path.read_bytes()) == ["/a"]
    logger.log(entry("/b"))
    assert logger.close(timeout_s=10)
    assert paths_in(path.read_bytes()) == ["/a", "/b"]


def test_stdout_output_in_a_real_process() -> None:
    script = textwrap.dedent("""
        from gateway.config.snapshot import AccessLog
        from gateway.telemetry.access_log import AccessLogEntry, AccessLogger
        logger = AccessLogger.from_config(AccessLog(path="-"))
        for i in range(3):
            logger.log(AccessLogEntry(start_time="t", method="GET", path=f"/{i}",
                                      protocol="HTTP/1.1", response_code=200, authority="a"))
        assert logger.close(timeout_s=10)
        print("done", logger.written, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, cwd=ROOT,
                         check=True, timeout=60)  # fmt: skip
    *lines, last = out.stdout.splitlines()
    assert paths_in(b"\n".join(lines) + b"\n") == ["/0", "/1", "/2"]
    assert last == b"done 3"


def test_stdout_output_is_file_descriptor_one(capfd: pytest.CaptureFixture[str]) -> None:
    logger = open_logger(Path("-"))
    logger.log(entry("/captured"))
    logger.reopen()  # standard output is not reopened
    logger.log(entry("/still"))
    assert logger.close(timeout_s=10)
    out = capfd.readouterr().out
    assert paths_in(out.encode()) == ["/captured", "/still"]
    assert logger.reopen_errors == 0
    os.fstat(1)  # closing the logger left standard output open


def test_reopen_after_rename_writes_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    logger = open_logger(path)
    logger.log(entry("/before-1"))
    logger.log(entry("/before-2"))
    path.rename(tmp_path / "access.log.1")  # what logrotate does, then it signals
    logger.reopen()
    logger.log(entry("/after"))
    assert logger.close(timeout_s=10)
    assert paths_in((tmp_path / "access.log.1").read_bytes()) == ["/before-1", "/before-2"]
    assert paths_in(path.read_bytes()) == ["/after"]


def test_failed_reopen_keeps_writing_the_old_file(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    logger = open_logger(tmp_path / "logs" / "access.log")
    logger.log(entry("/a"))
    (tmp_path / "logs").rename(tmp_path / "moved")  # the path can no longer be opened
    logger.reopen()
    logger.log(entry("/b"))
    assert logger.close(timeout_s=10)
    assert logger.reopen_errors == 1
    assert paths_in((tmp_path / "moved" / "access.log").read_bytes()) == ["/a", "/b"]


def test_unopenable_path_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "missing" / "access.log"
    with pytest.raises(AccessLogError, match=r"telemetry.accessLog.path.*missing.*No such file"):
        AccessLogger.from_config(AccessLog(path=str(bad)))


class FlakySink:
    def __init__(self, fail_times: int) -> None:
        self.fail_times = fail_times
        self.data = b""

    def write(self, data: bytes) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise OSError(28, "No space left on device")
        self.data += data

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_write_error_counts_the_lost_lines_and_the_writer_carries_on() -> None:
    sink = FlakySink(fail_times=1)
    logger = AccessLogger(sink)
    logger.log(entry("/lost-1"))
    assert logger.flush(timeout_s=10)
    logger.log(entry("/kept"))
    assert logger.close(timeout_s=10)
    assert logger.failed == 1 and logger.written == 1
    assert paths_in(sink.data) == ["/kept"]


def test_an_entry_that_cannot_be_encoded_loses_only_itself() -> None:
    sink = FlakySink(fail_times=0)
    logger = AccessLogger(sink)
    logger.log(entry("/a"))
    logger.log(entry("/bad", trace_id=object()))
    logger.log(entry("/c"))
    assert logger.close(timeout_s=10)
    assert paths_in(sink.data) == ["/a", "/c"]
    assert logger.failed == 1 and logger.written == 2


def test_logging_after_close_is_dropped_and_counted(tmp_path: Path) -> None:
    logger = open_logger(tmp_path / "a.log")
    assert logger.close(timeout_s=10)
    assert logger.close(timeout_s=10)  # idempotent
    logger.log(entry("/late"))
    logger.reopen()
    assert logger.dropped == 1
    assert (tmp_path / "a.log").read_bytes() == b""


def test_pipe_writes_are_cut_at_line_ends_within_pipe_buf() -> None:
    lines = [(b"x" * n) + b"\n" for n in (100, 3000, 2000, 5000, 10, 4095, 1)]
    data = b"".join(lines)
    pieces = [bytes(p) for p in _pieces(data, 4096)]
    assert b"".join(pieces) == data
    for p in pieces:
        assert p.endswith(b"\n")
        assert len(p) <= 4096 or p.count(b"\n") == 1  # only a single long line goes whole


def test_pipe_sink_delivers_whole_batches_through_a_real_pipe() -> None:
    read_fd, write_fd = os.pipe()
    sink = FileSink.for_fd(write_fd, owned=True)
    logger = AccessLogger(sink)
    for i in range(50):
        logger.log(entry(f"/{i}", user_agent="u" * 300))
    assert logger.close(timeout_s=10)
    with os.fdopen(read_fd, "rb") as f:
        assert paths_in(f.read()) == [f"/{i}" for i in range(50)]
