"""Files written whole or not at all: a temporary file beside the target, synced, then renamed over it; a failed
write (a full disk) explained, the previous file untouched; hard links for kept copies."""

import errno
import os
import shutil
from pathlib import Path

import torch


def temporary_path(path):
    """Where atomic_save writes `path` before renaming it: hidden, beside it, named by the writing process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_save(obj, path):
    """torch.save to a temporary file beside `path`, then rename: a crash never leaves half a file.

    A failed write (a full disk, say) raises an OSError that names the file, says whether the disk is
    full, and that the previous file at `path`, if any, is untouched; the temporary file is removed.
    """

    def write(tmp):
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())

    replace_atomically(path, write)


def replace_atomically(path, write):
    """`write(tmp)` makes the temporary file beside `path`, which then replaces `path` in one rename;
    a failed write is explained by _write_failure and leaves no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except Exception as error:
        failure = _write_failure(error, path, tmp)
        if failure is None:
            raise
        raise failure from error
    finally:
        tmp.unlink(missing_ok=True)
    sync_folder(path.parent)


def sync_folder(folder):
    if hasattr(os, "O_DIRECTORY"):  # make a rename durable
        fd = os.open(folder, os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# torch's zip writer reports a short write as "[enforce fail at inline_container.cc:...] unexpected pos",
# which hides the errno: a nearly empty file system is then the telling sign.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


_WRITER_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


def _write_failure(error, path, tmp):
    """An OSError that explains a failed checkpoint write, or None for errors that are not about writing."""
    chain, cause = [], error
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    codes = {e.errno for e in chain if isinstance(e, OSError)}
    writer = any(any(text in str(e) for text in _WRITER_FAILURES) for e in chain)
    if not codes and not writer:
        return None  # an object that cannot be pickled, say: not a disk problem
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    full = bool(codes & set(_NO_SPACE)) or (free is not None and free < 64 * 2**20)
    previous = f"The previous {path.name} is intact." if path.exists() else f"No earlier {path.name} existed."
    what = "the disk is full" if full else f"writing failed ({chain[-1]})"
    space = f" ({free / 2**20:.0f} MiB free on {path.parent})" if free is not None else ""
    return OSError(
        errno.ENOSPC if full else (min(codes) if codes else errno.EIO),
        f"could not save {path}: {what}{space}. {previous} Free some space (or choose another "
        f"--output_dir) and run the same command again: it resumes from the last checkpoint.",
    )


def link_or_copy(source, target):
    """Make `target` hold what `source` holds, atomically: a hard link (no second write of the same bytes)
    where the file system has them, else a copy. Later atomic replacements of `source` leave `target` alone."""

    def write(tmp):
        tmp.unlink(missing_ok=True)  # os.link will not replace a file
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    replace_atomically(target, write)
