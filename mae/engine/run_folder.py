"""A training run's output folder: one run at a time (a lock that dies with its process), and no files left
behind by a save that was interrupted."""

import os
import socket
import stat
import time
import warnings
from pathlib import Path

import torch

LOCK = ".lock"


class FolderLock:
    """An exclusive flock on output_dir/.lock, held by rank 0 for the whole run and removed at its end. The
    kernel releases the lock when the process ends, however it ends (kill -9 included), so a dead run never
    blocks the next; the file's text (pid, host, start time) only serves the message of a run that finds the
    folder in use."""

    def __init__(self, folder):
        self.path, self.file = Path(folder) / LOCK, None

    def acquire(self):
        """None when held, else the reason it could not be taken."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while self.file is None:
            try:
                file = self._open()
            except FolderLockError as error:  # returned, not raised: every rank raises it together
                return str(error)
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                holder = file.read().strip() or "another process"
                file.close()
                return (
                    f"{self.path.parent} is in use by another run ({holder}): two runs in one folder overwrite "
                    f"each other's checkpoint and log. Wait for it to end, or give this run another --output_dir."
                )
            except OSError as error:  # a file system without locks (some network mounts): go on, warned
                file.close()
                warnings.warn(f"cannot lock {self.path} ({error}): make sure that one run at a time uses "
                              f"{self.path.parent}", stacklevel=2)  # fmt: skip
                return None
            if _same_file(self.path, file):
                self.file = file
            else:  # a run that ended removed the file between our open and our lock: lock the new one
                file.close()
        self.file.seek(0)
        self.file.truncate()
        self.file.write(
            f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
        self.file.flush()
        return None

    def _open(self):
        """The lock file, created if need be, read-write: never through a symbolic link, and only if it is a
        regular file of its own (one hard link), since taking the lock truncates it: a `.lock` that is a link
        names another file, which the run must not destroy."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as error:
            if not self.path.is_symlink():
                raise
            raise FolderLockError(
                f"{self.path} is a symbolic link (to {os.readlink(self.path)}): a run's lock file is its own, and "
                f"taking it would overwrite what the link names. Remove the link; nothing was written."
            ) from error
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            what = (
                "not a regular file"
                if not stat.S_ISREG(info.st_mode)
                else f"{info.st_nlink} names of one file"
            )
            raise FolderLockError(
                f"{self.path} is {what}: a run's lock file is its own, and taking it would overwrite another "
                f"file's content. Remove it; nothing was written."
            )
        return os.fdopen(fd, "r+")

    def release(self):
        if self.file is not None:
            self.path.unlink(
                missing_ok=True
            )  # before unlocking: whoever opened it meanwhile will see it gone
            self.file.close()  # closing the file drops the lock
            self.file = None


class FolderLockError(OSError):
    """The output folder cannot be locked: another run holds it, or its .lock is not the run's own file."""


def _same_file(path, file):
    try:
        return os.stat(path).st_ino == os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return False


def lock_output_dir(args, context):
    """Rank 0 locks output_dir; every rank raises together if it is in use (or the others would wait forever)."""
    lock = FolderLock(args.output_dir)
    problem = [lock.acquire() if context.is_main else None]
    if context.distributed:
        torch.distributed.broadcast_object_list(problem, src=0)
    if problem[0]:
        raise FolderLockError(problem[0])
    if context.is_main:
        remove_stale_temporaries(args.output_dir)
    return lock


def remove_stale_temporaries(folder):
    """Delete the hidden .<name>.tmp-<pid> files that a save killed half-way left (full-size checkpoints).
    Only the run holding the folder's lock calls this, so no other process is writing them."""
    stale = [p for p in Path(folder).glob(".*.tmp-*") if p.is_file() and not p.is_symlink()]
    size = 0
    for path in stale:
        size += path.stat().st_size
        path.unlink(missing_ok=True)
    if stale:
        print(f"removed {len(stale)} temporary file(s) ({size / 2**20:.1f} MiB) left in {folder} by an "
              f"interrupted save", flush=True)  # fmt: skip
