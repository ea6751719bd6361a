"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never a partial one.

Every file of a run directory (config, metadata, progress, evaluation, checkpoints) is written through
:func:`atomic_write`: the content goes to a temporary file in the same directory, is flushed to disk, and replaces
the target with one ``os.replace``; on any error the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], None], *, text: bool = False) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it onto ``path`` in one step."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as for a plain open(); mkstemp would force 0o600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8"} if text else {})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda fh: fh.write(text), text=True)


def atomic_write_parquet(path: str | os.PathLike[str], frame: Any) -> None:
    """Write a pandas DataFrame to ``path`` as Parquet (without its index) atomically."""
    atomic_write(path, lambda fh: frame.to_parquet(fh, index=False))
