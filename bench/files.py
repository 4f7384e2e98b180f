"""Writing shared files safely: whole or not at all (atomic replace), one writer at a time (a maintained file lock)."""

from __future__ import annotations

import os
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path

from filelock import FileLock


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader (or a crash) sees the previous complete file or the new one,
    never half; the file gets the permissions of a new file (mkstemp would make it private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def lock_of(path: Path, timeout_s: float = -1) -> AbstractContextManager:
    """The lock that one writer of ``path`` holds at a time (a ``<name>.lock`` file beside it); waits up to
    ``timeout_s`` (forever when negative), then raises ``filelock.Timeout``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(path.name + ".lock")), timeout=timeout_s)
