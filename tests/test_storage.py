"""agelab.storage: ``data=`` and the mirror from a URI (fsspec's memory:// and file:// filesystems hold
real UTKFace images here), copied once into the cache, whole or not at all, and healed after a cut."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

from agelab import storage
from agelab.config import build_config, checked_config
from agelab.data_sources import load_data, parse_sources
from tests.real_data import copy_real_images

fsspec = pytest.importorskip(
    "fsspec", reason="fsspec is not installed: pip install -r requirements-cluster.txt"
)


@pytest.fixture
def images(utkface_dir, tmp_path) -> Path:
    folder = tmp_path / "source" / "utk"
    copy_real_images(utkface_dir, folder, 40, step=97)
    return folder


@pytest.fixture
def memory_prefix(images, request) -> str:
    """The images under a memory:// prefix (as they would be in a bucket), removed after the test."""
    fs = fsspec.filesystem("memory")
    prefix = f"/agelab-test-{request.node.name[:40]}/utk"
    for path in images.iterdir():
        fs.pipe(f"{prefix}/{path.name}", path.read_bytes())
    yield f"memory://{prefix}"
    if fs.exists(prefix):
        fs.rm(prefix, recursive=True)


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir() if not p.name.startswith("."))
    return names == sorted(p.name for p in b.iterdir() if not p.name.startswith(".")) and all(
        filecmp.cmp(a / n, b / n, shallow=False) for n in names
    )


def test_a_plain_folder_is_not_a_uri_and_is_used_where_it_is(images):
    assert not storage.is_uri(str(images)) and storage.local_path(str(images)) == images
    assert storage.is_uri("s3://bucket/utk") and storage.is_uri("file:///x") and not storage.is_uri("data/x")


def test_a_memory_prefix_is_copied_once_into_the_cache_and_trained_from(memory_prefix, images, isolated_dirs):
    folder = storage.local_path(memory_prefix)
    assert folder.is_relative_to(isolated_dirs / "cache" / "remote")
    assert same_files(folder, images)
    manifest = json.loads((folder / storage.MANIFEST).read_text())
    assert manifest["uri"] == memory_prefix and len(manifest["files"]) == 40
    # data= takes the URI: the config keeps it (each machine reads it into its own cache) and the
    # sources, index and split read the local copy.
    config = checked_config(build_config({"model": "baseline_cnn", "weights": "none", "data": memory_prefix}))
    assert config["data"] == memory_prefix
    [source] = parse_sources(memory_prefix)
    assert source.folder == folder and source.name == "utk"
    frame = load_data(memory_prefix)
    assert len(frame) == 40 and set(frame["split"]) <= {"train", "val", "test"}
    # Once: with the prefix gone, the copy is still used, untouched.
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    fsspec.filesystem("memory").rm(memory_prefix.split("://")[1], recursive=True)
    assert storage.local_path(memory_prefix) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_an_interrupted_copy_is_healed_keeping_the_files_already_whole(images, isolated_dirs):
    uri = images.resolve().as_uri()  # file:///...: fsspec's local filesystem, as a bucket would be
    dest = storage.copy_folder(uri)
    partial = dest.with_name(dest.name + storage.PARTIAL)
    # What a copy killed half-way leaves: some whole files, one cut short in its .part, no manifest.
    names = sorted(p.name for p in images.iterdir())
    partial.mkdir(parents=True)
    for name in names[:15]:
        (partial / name).write_bytes((images / name).read_bytes())
    (partial / f"{names[15]}.part").write_bytes((images / names[15]).read_bytes()[:100])
    kept = {name: (partial / name).stat().st_ino for name in names[:15]}
    assert storage.local_path(uri) == dest and not partial.exists()
    assert same_files(dest, images)
    assert {name: (dest / name).stat().st_ino for name in names[:15]} == kept  # not fetched again
    assert not list(dest.glob("*.part"))
    # A file lost from a finished copy (or cut short) is fetched again; the rest stay.
    (dest / names[3]).unlink()
    (dest / names[4]).write_bytes(b"cut")
    assert storage.local_path(uri) == dest and same_files(dest, images)


def test_a_uri_that_cannot_be_read_is_one_sentence(isolated_dirs):
    with pytest.raises(storage.StorageError, match="holds no files"):
        storage.local_path("memory:///agelab-test-nothing-here/utk")
    with pytest.raises(storage.StorageError, match="nosuchproto"):
        storage.local_path("nosuchproto://bucket/utk")


def test_the_mirror_may_be_a_prefix(images, isolated_dirs, monkeypatch):
    from agelab import assets

    monkeypatch.setenv("AGELAB_MIRROR", images.parent.resolve().as_uri())
    mirror = assets.mirror_folder()
    assert mirror.is_relative_to(isolated_dirs / "cache" / "remote")
    assert same_files(mirror / "utk", images)
