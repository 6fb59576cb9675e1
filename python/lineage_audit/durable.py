"""Durable renames: a file written, synced and renamed into place survives a crash only once
the directory holding it is synced too."""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["fsync_directory"]

# Filesystems that cannot sync a directory say so with these; there is nothing more to do.
_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EBADF}


def fsync_directory(directory: str | Path) -> None:
    """fsync ``directory`` (after a rename or a new file in it); a real I/O error raises."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
    finally:
        os.close(fd)
