"""Atomic writes: a reader never sees a half-written file, because it appears by rename."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_with(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and rename the result onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600 whatever the umask; a file written in place would honour it, and
        # a dashboard or a cluster running as another user must read what this one writes.
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """This process's umask, read without changing it (``os.umask`` can only be read by setting it,
    which would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# What to do about a file operation that failed, by its errno.
WRITE_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space and run it again",
    errno.EDQUOT: "the disk quota is used up; free some space and run it again",
    errno.EACCES: "no permission; give your user access to it, or choose another place",
    errno.EPERM: "no permission; give your user access to it, or choose another place",
    errno.EROFS: "the file system is read-only; choose a folder you can write to",
    errno.EISDIR: "it is a folder; give a file name",
    errno.ENOTDIR: "a part of that path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter one",
}
# Errors that only a write gives (a read never fills a disk).
WRITE_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EISDIR)


def why_not_written(path: str | Path, err: OSError) -> str:
    """One sentence for a write of ``path`` that failed with ``err``: what failed and what to do.
    ``path`` may be :func:`write_with`'s temporary file (an ``OSError``'s ``filename``): the message
    names the file it stood for."""
    advice = WRITE_ADVICE.get(err.errno or 0, "")
    reason = err.strerror or str(err)
    path = Path(path)
    staged = path.name.startswith(".") and path.name.endswith(".tmp")
    if staged:
        path = path.with_name(path.name[1 : -len(".tmp")].rsplit(".", 1)[0])
    verb = "write" if staged or err.errno in WRITE_ONLY else "use"
    return f"cannot {verb} {path} ({reason})" + (f": {advice}" if advice else "")


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite number replaced by None (JSON has no NaN; ``null`` it is)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(value) for value in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # a numpy scalar
        return json_safe(obj.item())
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text: NaN and infinity become ``null``, never the invalid ``NaN``."""
    return json.dumps(json_safe(obj), allow_nan=False, default=str, **kwargs)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, dumps(obj, indent=2) + "\n")


def write_parquet(path: str | Path, frame: Any) -> Path:
    return write_with(path, lambda tmp: frame.to_parquet(tmp, index=False))


def read_json(path: str | Path, default: Any = None) -> Any:
    """Read JSON, or return ``default`` when the file is missing."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def read_cache_json(path: str | Path, default: Any = None) -> Any:
    """Read a cache's JSON; a missing, unreadable or damaged file is ``default`` (it is rebuilt)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
