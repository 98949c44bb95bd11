"""One writer per run directory: an exclusive ``fcntl.flock`` on ``DIR/.lock``.

The lock file holds the owner's pid, host and start time (for the message a second writer gets);
the kernel releases the lock when the owner exits, however it exits (``kill -9`` included), so a
stale file never blocks anyone. The owner removes the file when it releases the lock (a process
that locked a file just unlinked this way notices and locks the new one instead).
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import socket
from pathlib import Path

from ..errors import RunLocked

__all__ = ["LOCK_NAME", "RunLocked", "RunLock", "acquire", "holder"]

LOCK_NAME = ".lock"


def holder(directory) -> dict:
    """What the lock file of ``directory`` says about its last owner: ``{"pid", "host", "since"}``
    (empty when there is no readable lock file). The owner may have exited since."""
    try:
        text = (Path(directory) / LOCK_NAME).read_text()
    except OSError:
        return {}
    info = {}
    for line in text.splitlines():
        k, _, v = line.partition("=")
        if k in ("pid", "host", "since", "command"):
            info[k] = int(v) if k == "pid" and v.strip().isdigit() else v.strip()
    return info


class RunLock:
    """A held lock on a run directory; :meth:`release` (or leaving a ``with`` block) frees it."""

    def __init__(self, directory: Path, fd: int):
        self.directory = directory
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        import fcntl

        if self._fd is None:
            return
        try:
            (self.directory / LOCK_NAME).unlink(missing_ok=True)  # still ours: we hold it
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(directory, command: str = "") -> RunLock:
    """Lock ``directory`` (which must exist) for writing, without waiting.

    Raises :class:`~ude.errors.RunLocked` (a :class:`~ude.errors.RunDirError`) naming the holder's
    pid when another process (or another open of the lock in this process) holds it.
    """
    import fcntl

    directory = Path(directory)
    path = directory / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            break
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return _claim(directory, fd, command)
        os.close(fd)  # the holder removed it between our open and flock: lock the new file
    info = holder(directory)
    pid = info.get("pid") if isinstance(info.get("pid"), int) else None
    who = f"process {pid}" if pid is not None else "another process"
    if info.get("host") and info["host"] != socket.gethostname():
        who += f" on {info['host']}"
    since = f" since {info['since']}" if info.get("since") else ""
    what = f" ({info['command']})" if info.get("command") else ""
    raise RunLocked(
        f"{directory} is in use by {who}{what}{since} (lock {path}); wait for it "
        "to finish or stop it, then retry",
        pid,
    )


def _claim(directory: Path, fd: int, command: str) -> RunLock:
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    text = f"pid={os.getpid()}\nhost={socket.gethostname()}\nsince={stamp}\n"
    if command:
        text += f"command={command}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
    return RunLock(directory, fd)
