"""Data and weights from a URI: ``data=`` and ``AGELAB_MIRROR`` take a local folder or an object-store
prefix (``s3://bucket/utkface``, ``gs://...``, and ``file://`` or ``memory://``), read through fsspec.

A prefix is copied once into ``<AGELAB_CACHE_DIR>/remote/<name>-<hash>/`` and that folder is used
from then on: it is complete or it is not used. Files land in a ``.partial`` folder beside it (each
written to ``*.part`` and renamed when whole), a ``.agelab-copy.json`` listing every file and its
size is written last, and the folder is renamed into place. A copy that was interrupted is healed
by the next call: the files already whole are kept, the rest are fetched. A later change under the
prefix is not seen: delete the folder to fetch it again.

fsspec is optional (``requirements-cluster.txt``); object stores need their backend too (``s3fs``
for ``s3://``, ``gcsfs`` for ``gs://``). Nothing here is imported for a plain folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
from pathlib import Path

from agelab import atomic
from agelab.paths import cache_dir

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
MANIFEST = ".agelab-copy.json"
PARTIAL = ".partial"
BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


class StorageError(RuntimeError):
    """A URI that cannot be read, in one sentence naming it and what to do."""


def is_uri(location: str | Path | None) -> bool:
    """``s3://b/x`` and ``file:///x`` are URIs; ``/data/x`` and ``data/x`` are plain folders."""
    return isinstance(location, str) and bool(URI.match(location.strip()))


def local_path(location: str | Path, cache: Path | None = None) -> Path:
    """A plain folder as it is; a URI's files copied once into the cache (:func:`materialise`)."""
    if is_uri(location):
        return materialise(str(location).strip(), cache)
    return Path(location).expanduser()


def copy_folder(uri: str, cache: Path | None = None) -> Path:
    """Where ``uri``'s files are kept on this machine: named after its last part and a hash of it."""
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "_", uri.rstrip("/").rsplit("/", 1)[-1])[:40] or "root"
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:12]
    return Path(cache or cache_dir() / "remote") / f"{tail}-{digest}"


def _filesystem(uri: str):
    try:
        import fsspec
    except ImportError:
        raise StorageError(
            f"{uri} is a URI, and reading one needs fsspec: pip install -r requirements-cluster.txt"
        ) from None
    scheme = uri.split("://", 1)[0].lower()
    try:
        return fsspec.core.url_to_fs(uri)
    except ImportError:
        package = BACKENDS.get(scheme, f"the fsspec backend for {scheme}://")
        raise StorageError(
            f"{uri}: reading {scheme}:// needs {package}; install it (pip install {package})"
        ) from None
    except ValueError as err:  # an unknown protocol
        raise StorageError(
            f"{uri}: {err}; give a local folder or an s3://, gs:// or file:// prefix"
        ) from None


def _complete(folder: Path, uri: str) -> bool:
    """Whether ``folder`` holds a finished copy of ``uri``: its manifest, and every file at its size."""
    try:
        manifest = atomic.read_json(folder / MANIFEST, None)
    except (ValueError, OSError):
        return False
    if (
        not isinstance(manifest, dict)
        or manifest.get("uri") != uri
        or not isinstance(manifest.get("files"), dict)
    ):
        return False
    for name, size in manifest["files"].items():
        try:
            if (folder / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def materialise(uri: str, cache: Path | None = None) -> Path:
    """``uri``'s files in a local folder, fetched once (see the module's note); returns the folder."""
    dest = copy_folder(uri, cache)
    if _complete(dest, uri):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f"{dest.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one copy at a time per machine; the others wait and reuse it
        if _complete(dest, uri):
            return dest
        return _fetch(uri, dest)


def _fetch(uri: str, dest: Path) -> Path:
    fs, root = _filesystem(uri)
    root = root.rstrip("/")
    try:
        listing = fs.find(root, detail=True)
    except (OSError, ValueError) as err:
        raise StorageError(f"{uri} cannot be listed: {str(err).splitlines()[0][:200]}") from None
    files = {}
    for path, info in listing.items():
        if info.get("type", "file") != "file":
            continue
        name = path[len(root) :].lstrip("/") if path.startswith(root) else path.rsplit("/", 1)[-1]
        if name and not name.endswith(".part") and name != MANIFEST:
            files[name] = (path, info.get("size"))
    if not files:
        raise StorageError(f"{uri} holds no files; check the prefix (and your credentials for the store)")
    partial = dest.with_name(dest.name + PARTIAL)
    if dest.exists() and not partial.exists():
        dest.rename(partial)  # an incomplete or damaged copy: keep its whole files, fetch the rest
    partial.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, (path, size) in sorted(files.items()):
        target = partial / name
        if not (target.is_file() and size is not None and target.stat().st_size == size):
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            try:
                fs.get_file(path, str(part))
            except (OSError, ValueError) as err:
                raise StorageError(
                    f"{uri}: {name} could not be fetched: {str(err).splitlines()[0][:200]}"
                ) from None
            os.replace(part, target)
        sizes[name] = target.stat().st_size
    atomic.write_json(partial / MANIFEST, {"uri": uri, "files": sizes})
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
    return dest
