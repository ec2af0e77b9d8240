"""Processes for the benchmark: start pinned, wait for readiness, measure, stop.

Every server the benchmark runs (the upstream and the three proxies) is started
through :class:`Supervisor`, which

* prefixes the command with ``taskset -c CPU`` so the process (and every child it
  forks, such as nginx's worker or Isthmus's worker processes) runs on one core;
* puts it in its own session / process group so it can be stopped as a unit, and
  so a Ctrl-C in the terminal reaches only the benchmark driver, which then stops
  everything in order;
* sends its stdout and stderr to files in the run's temporary directory, so a
  chatty server never blocks on a full pipe and its stderr can be shown when it
  fails.

The module also reads what Linux reports about those processes: peak resident
set size (``VmHWM`` in ``/proc/PID/status``), CPU time (``/proc/PID/stat``), the
CPU affinity, and per-core busy time (``/proc/stat``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS: int = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A step of the benchmark could not run (as opposed to a slow result)."""


# --------------------------------------------------------------------------- ports


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct loopback TCP ports that are free right now.

    All sockets are held open until every port is chosen, so the ports are
    distinct; they are closed before returning, so there is a small window in
    which another program could take one (acceptable on a benchmark machine).
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ----------------------------------------------------------------------- /proc reads


def _ppid_map() -> dict[int, int]:
    """Map every visible pid to its parent pid."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may contain spaces.
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
    return parents


def process_tree(root: int) -> list[int]:
    """The pid ``root`` followed by all of its live descendants."""
    parents = _ppid_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    if root not in parents:
        return []
    tree = [root]
    i = 0
    while i < len(tree):
        tree.extend(sorted(children.get(tree[i], [])))
        i += 1
    return tree


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict of field name to raw value."""
    out: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _kib(value: str) -> int:
    return int(value.split()[0]) if value else 0


@dataclass
class ProcMemory:
    """Peak and current resident memory of one process."""

    pid: int
    name: str
    vm_hwm_kib: int
    vm_rss_kib: int
    cpus: list[int]


def memory_of(pids: Iterable[int]) -> list[ProcMemory]:
    """VmHWM/VmRSS (KiB) and affinity of each pid that still exists."""
    out: list[ProcMemory] = []
    for pid in pids:
        try:
            st = proc_status(pid)
            cpus = sorted(os.sched_getaffinity(pid))
        except (OSError, ValueError):
            continue
        out.append(
            ProcMemory(
                pid=pid,
                name=st.get("Name", "?"),
                vm_hwm_kib=_kib(st.get("VmHWM", "")),
                vm_rss_kib=_kib(st.get("VmRSS", "")),
                cpus=cpus,
            )
        )
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """User+system CPU seconds consumed so far by the given live processes."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # After the command name: state(0) ppid(1) ... utime(11) stime(12).
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def core_times() -> dict[int, tuple[int, int]]:
    """Per-core (busy, total) jiffies from ``/proc/stat``."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *vals = line.split()
        nums = [int(v) for v in vals[:8]]
        idle = nums[3] + nums[4]  # idle + iowait
        total = sum(nums)
        out[int(name[3:])] = (total - idle, total)
    return out


def core_busy_pct(
    before: Mapping[int, tuple[int, int]], after: Mapping[int, tuple[int, int]]
) -> dict[int, float]:
    """Busy percentage of each core between two :func:`core_times` samples."""
    out: dict[int, float] = {}
    for cpu, (busy1, total1) in after.items():
        busy0, total0 = before.get(cpu, (0, 0))
        span = total1 - total0
        out[cpu] = round(100.0 * (busy1 - busy0) / span, 1) if span > 0 else 0.0
    return out


# ----------------------------------------------------------------------- processes


@dataclass
class Proc:
    """One server process started by the :class:`Supervisor`."""

    name: str
    popen: subprocess.Popen[bytes]
    cpu: int
    stdout_path: Path
    stderr_path: Path
    argv: list[str]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[int]:
        """This process and its live descendants (e.g. nginx's worker)."""
        return process_tree(self.pid) if self.alive() else []

    def output_tail(self, limit: int = 4000) -> str:
        """The last ``limit`` characters of stderr (and stdout, if stderr is empty)."""
        chunks = []
        for path in (self.stderr_path, self.stdout_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                chunks.append(f"--- {path.name} ---\n{text[-limit:]}")
        return "\n".join(chunks) if chunks else "(no output)"


def require_tools(tools: Mapping[str, str]) -> None:
    """Fail with an install hint if any of ``tools`` (binary -> Debian package) is missing."""
    missing = {tool: pkg for tool, pkg in tools.items() if shutil.which(tool) is None}
    if missing:
        names = ", ".join(sorted(missing))
        pkgs = " ".join(sorted(set(missing.values())))
        raise BenchError(f"missing tools: {names}. Install them with: apt-get install -y {pkgs}")


def pinned(argv: Sequence[str], cpu: int) -> list[str]:
    """``argv`` prefixed with ``taskset -c CPU``."""
    return ["taskset", "-c", str(cpu), *argv]


class Supervisor:
    """Starts, tracks and stops the benchmark's server processes."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        cpu: int,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        """Start ``argv`` pinned to ``cpu`` in its own process group."""
        full = pinned(argv, cpu)
        out_path = self.workdir / f"{name}.stdout"
        err_path = self.workdir / f"{name}.stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            popen = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        proc = Proc(name, popen, cpu, out_path, err_path, full)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``timeout``."""
        if proc not in self.procs:
            return
        self.procs.remove(proc)
        pids = proc.tree()
        if proc.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout)
        # SIGKILL the group and any descendant that left it, by pid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in pids:
            if pid != proc.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(2.0)

    def stop_all(self) -> None:
        """Stop every process still running, newest first."""
        for proc in reversed(list(self.procs)):
            self.stop(proc)


# ------------------------------------------------------------------------ readiness


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A plain HTTP/1.1 GET (no proxy from the environment) -> (status, body)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wait_http(
    url: str,
    proc: Proc,
    timeout: float,
    *,
    expect_body: bytes | None = None,
    what: str = "",
) -> None:
    """Poll ``url`` until it answers 200 (and ``expect_body``), or raise BenchError.

    Fails fast if ``proc`` exits, and includes its stderr in the message.
    """
    label = what or proc.name
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        if not proc.alive():
            raise BenchError(
                f"{label}: process exited with status {proc.popen.returncode} before it was "
                f"ready ({url}).\ncommand: {' '.join(proc.argv)}\n{proc.output_tail()}"
            )
        try:
            status, body = http_get(url, timeout=1.0)
            if status == 200 and (expect_body is None or body == expect_body):
                return
            last = f"status {status}, body {body[:200]!r}"
        except (OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise BenchError(
                f"{label}: {url} not ready after {timeout:.0f}s (last: {last}).\n"
                f"command: {' '.join(proc.argv)}\n{proc.output_tail()}"
            )
        time.sleep(0.1)
