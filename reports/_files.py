"""Creating the folder a report or export goes into, with an error that names the path in the way."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def ensure_folder(folder: Path) -> Path:
    """Create ``folder`` and its parents; a file where a folder must be raises ``NotADirectoryError`` naming it.

    ``Path.mkdir`` reports that case as "File exists" (which reads as if the folder were already there) or names
    the folder it could not make rather than the file in its way.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), None)
        if blocking is None:
            raise
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(blocking)) from None
    return folder
