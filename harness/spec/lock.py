"""An advisory lock per run directory, so two processes never compute the same run at once.

``run_lock(run_dir)`` holds ``fcntl.flock`` on ``<run_dir>/.toxbench.lock``, a small JSON file naming the holder
(pid, host, start time). A second process on the same spec gets ``RunLocked`` (a one-line UsageError naming the
holder) or, with ``wait=True``, polls until the holder is done. The kernel drops a flock when its process dies, so a
crashed run never blocks the next one; a lock still held after its recorded process died (same host: a forked child
inherited the descriptor) is taken over.

Shared file systems: flock works across machines on NFSv4 / Lustre / GPFS (lock server, leases). Where it does not
(a host-local flock), the holder's heartbeat (the lock file's mtime, refreshed every ``HEARTBEAT_S``) still tells
a live holder on another host from a crashed one (no heartbeat for ``STALE_S``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..core.errors import UsageError

LOCK_NAME = ".toxbench.lock"
#: seconds between two tries while waiting (tests lower it)
POLL_S = 5.0
#: the holder refreshes the lock file's mtime this often ...
HEARTBEAT_S = 30.0
#: ... and a holder on another host silent for this long is presumed dead
STALE_S = 300.0


class RunLocked(UsageError):
    """Another live process holds the run directory's lock."""


def _hostname() -> str:
    return socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_holder_fd(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        obj = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):  # being written right now, or foreign content
        return {}
    return obj if isinstance(obj, dict) else {}


def read_holder(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The JSON the current (or last) holder wrote, ``{}`` when there is none."""
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return {}
    try:
        return _read_holder_fd(fd)
    finally:
        os.close(fd)


def _heartbeat_fresh(path_or_fd: Path | int) -> bool:
    try:
        st = os.fstat(path_or_fd) if isinstance(path_or_fd, int) else os.stat(path_or_fd)
    except OSError:
        return False
    return time.time() - st.st_mtime < STALE_S


def holder_alive(holder: dict[str, Any], heartbeat_fresh: bool) -> bool:
    """Whether the process named by ``holder`` may still be running: on this host its pid decides; on another
    host, the heartbeat."""
    if not holder.get("host") or not isinstance(holder.get("pid"), int):
        return True  # a holder that has not written its name yet
    if holder["host"] == _hostname():
        return _pid_alive(holder["pid"])
    return heartbeat_fresh


def live_holder(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The live holder of ``run_dir``'s lock (for ``toxbench show``), None when no one is running it. Read-only:
    it never takes the lock, so it cannot make a starting run refuse."""
    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return None
    holder = read_holder(run_dir)
    return holder if holder and holder_alive(holder, _heartbeat_fresh(path)) else None


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "another process (starting up)"
    return f"pid {holder['pid']} on {holder.get('host', '?')} since {holder.get('started', '?')}"


def _same_file(fd: int, path: Path) -> bool:
    """The descriptor still names the file at ``path`` (not one a previous holder unlinked on release)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _unlink_if_same(path: Path, fd: int) -> None:
    if _same_file(fd, path):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _acquire(run_dir: Path, wait: bool, log: Callable[[str], None]) -> int:
    """A descriptor of the lock file with the flock held (the caller writes its name and releases)."""
    path = run_dir / LOCK_NAME
    announced = False
    while True:
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:  # the dir was removed by a holder that just released an empty run
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = None
        except BlockingIOError:
            held = _read_holder_fd(fd)
            if held and not holder_alive(held, _heartbeat_fresh(fd)):
                # The recorded holder is gone but its descriptor lives on (a forked child): take the lock over by
                # replacing the file; the orphan keeps a lock on a file nobody looks at any more.
                log(f"[toxbench] taking over the stale lock of {describe_holder(held)} on {run_dir}")
                _unlink_if_same(path, fd)
                os.close(fd)
                continue
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise UsageError(f"cannot lock {str(path)!r}: the file system does not support file locks "
                                 f"({e.strerror}); use an output dir on a file system that does") from None
            raise
        if held is None:
            if not _same_file(fd, path):  # locked a file its previous holder unlinked on release: try again
                os.close(fd)
                continue
            prev = _read_holder_fd(fd)
            if not (prev and prev.get("host") != _hostname() and holder_alive(prev, _heartbeat_fresh(fd))):
                if prev and prev.get("pid") != os.getpid():
                    log(f"[toxbench] {run_dir}: took over the lock left by {describe_holder(prev)} (not running)")
                return fd
            # flock is host-local on this file system, and another host's run is alive (fresh heartbeat)
            held = prev
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        if not wait:
            raise RunLocked(f"run dir {str(run_dir)!r} is in use by {describe_holder(held)}; wait for it to finish "
                            "or pass --wait")
        if not announced:
            log(f"[toxbench] waiting for {describe_holder(held)} to finish {run_dir}")
            announced = True
        time.sleep(POLL_S)


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, wait: bool = False, log: Callable[[str], None] = lambda m: None,
             enabled: bool = True) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the block (creating the dir). On exit the lock file is removed, and the dir too
    when the block left nothing in it (a run that failed before writing anything leaves no stub)."""
    run_dir = Path(run_dir)
    if not enabled:
        yield run_dir
        return
    existed = run_dir.is_dir()
    fd = _acquire(run_dir, wait, log)
    me = {"pid": os.getpid(), "host": _hostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
    os.fsync(fd)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(fd)

    beater = threading.Thread(target=beat, name="toxbench-lock-heartbeat", daemon=True)
    beater.start()
    try:
        yield run_dir
    finally:
        stop.set()
        beater.join()
        # Unlink while still holding the lock: a waiter that opened this file notices (_same_file) and retries.
        _unlink_if_same(run_dir / LOCK_NAME, fd)
        os.close(fd)
        if not existed:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only succeeds when empty
