"""The embedded local Ray leaves nothing behind, however the sweep that started it ends.

A sweep without ``--address`` starts its own Ray (``ray.init(address="local")``). ``ray.shutdown()`` ends its
processes when the driver ends normally or by a signal it handles; a driver killed outright (SIGKILL, the OOM killer)
leaves Ray's ``DashboardAgent`` and ``RuntimeEnvAgent`` running as orphans, which ignore SIGTERM.

So each driver gives its embedded Ray a temporary folder of its own, ``<tmp>/qarl-ray/<pid>-<start time>`` (the
driver's pid and start time, so that a reused pid is not mistaken for the driver; ``<tmp>`` is ``QARL_RAY_TMPDIR``
or the system's temporary folder), where Ray keeps its sockets, logs and session files. Every process of that Ray
names the folder in its command line or environment or holds a file in it open. :func:`embedded_ray` ends, before
starting, the processes of every such folder whose driver no longer runs, and after ``ray.shutdown()`` whatever of
its own is left, removing the folders. A Ray cluster the user started (``ray start``, a cluster joined with
``--address``) uses no such folder and is never touched. Processes are found through ``/proc`` (Linux); elsewhere
nothing is cleaned up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PROC = Path("/proc")


MAX_ROOT_CHARS = 26
"""Ray's Unix sockets live at ``<root>/<pid>-<start>/session_<date>_<time>_<pid>/sockets/plasma_store``, and a socket
path has at most 107 bytes: the root may have at most this many characters."""


def root() -> Path:
    """The folder holding the embedded Rays' temporary folders: ``QARL_RAY_TMPDIR``, else ``/tmp`` (short, as Ray's
    socket paths need; the system's temporary folder where there is no ``/tmp``), then ``qarl-ray``."""
    base = os.environ.get("QARL_RAY_TMPDIR") or ("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir())
    return Path(base) / "qarl-ray"


class EmbeddedRayError(RuntimeError):
    """The embedded Ray cannot be given its folder (reported as one line)."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22); None if it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the fields after the command name, which may hold spaces
    return None if fields[0] == "Z" else fields[19]


def driver_name(pid: int | None = None) -> str:
    """``<pid>-<start time>`` of this process (or ``pid``): the name of its embedded Ray's folder."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{_start_time(pid)}"


def _alive(name: str) -> bool:
    pid, _, start = name.partition("-")
    return pid.isdigit() and _start_time(int(pid)) == start


def processes_of(folder: Path) -> list[int]:
    """The running processes (but this one) that name ``folder`` in their command line or environment, hold a file in
    it open or work in it."""
    needle = str(folder).rstrip("/") + "/"
    raw = needle.encode()
    found = []
    if not PROC.is_dir():
        return found
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or _start_time(int(entry.name)) is None:
            continue
        try:
            if raw in (entry / "cmdline").read_bytes() or raw in (entry / "environ").read_bytes():
                found.append(int(entry.name))
                continue
            links = [os.readlink(entry / "cwd") + "/"]
            links += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # gone, or another user's
            continue
        if any(link.startswith(needle) for link in links):
            found.append(int(entry.name))
    return found


def terminate(pids: list[int], grace_s: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL for those still running after ``grace_s``; returns the pids that were running."""
    running = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            running.append(pid)
    deadline = time.monotonic() + grace_s
    while any(_start_time(p) is not None for p in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in running:
        if _start_time(pid) is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return running


def end_leftovers(log: Callable[[str], None] | None = None) -> list[int]:
    """End the processes of the embedded Rays whose driver no longer runs, and remove their folders; returns the
    pids ended."""
    ended: list[int] = []
    base = root()
    if not base.is_dir():
        return ended
    for folder in sorted(base.iterdir()):
        if not folder.is_dir() or _alive(folder.name):
            continue
        ended += terminate(processes_of(folder))
        shutil.rmtree(folder, ignore_errors=True)
    if ended and log is not None:
        log(f"ended {len(ended)} process(es) left by an earlier embedded Ray whose sweep was killed")
    return ended


@contextlib.contextmanager
def embedded_ray(log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Around an embedded Ray's life: ends earlier leftovers, yields the temporary folder to give ``ray.init``
    (``_temp_dir``), and once the block ends (after ``ray.shutdown()``) ends whatever of its processes remain and
    removes the folder."""
    if len(str(root())) > MAX_ROOT_CHARS:
        raise EmbeddedRayError(
            f"the embedded Ray's folder {root()} is too long for Ray's socket paths (at most {MAX_ROOT_CHARS} "
            "characters); set QARL_RAY_TMPDIR to a short folder such as /tmp"
        )
    end_leftovers(log)
    folder = root() / driver_name()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        terminate(processes_of(folder))
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["EmbeddedRayError", "driver_name", "embedded_ray", "end_leftovers", "processes_of", "root", "terminate"]
