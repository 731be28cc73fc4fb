"""Training inputs made by the serving path: the detector and :func:`agelab.crop.align_face` run once
over a dataset's images, and the model-sized crops are cached as PNG (lossless, so the decoded
training image is the serving image to the pixel).

The cache lives in ``cache_dir()/crops/<source folder hash>-<size>/``; a crop appears by atomic
rename, so a killed run leaves no half-written crop, and the next run only makes the missing ones.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from agelab import atomic
from agelab.crop import ALIGN_POINTS, labelled_crop
from agelab.paths import cache_dir

if TYPE_CHECKING:
    from agelab.faces import FaceDetector, Located

# The serving path's default detection floor (predict's --min-score and the Predict page's default).
MIN_SCORE = 0.5
# Crop files are written under this name scheme version; bump it when the crop changes.
# aligned2: the detector model is run by LiteRT directly (agelab.blazeface); keypoints moved ~0.1 px.
# aligned3: the detector input and the crop are resampled by area averaging and bicubic (crop.resample).
VERSION = "aligned3"


def crop_folder(source: str | Path, image_size: int) -> Path:
    digest = hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "crops" / f"{VERSION}-{digest}-{image_size}"


def labelled_face(image: np.ndarray, detector: FaceDetector, min_score: float = MIN_SCORE) -> Located | None:
    """The labelled person's face in a labelled image (one person): the largest face the detector
    finds with the keypoints the crop is aligned by, or None when it finds none."""
    found = [item for item in detector.locate(image, min_score, None) if len(item[2]) >= ALIGN_POINTS]
    return max(found, key=lambda item: item[0][2] * item[0][3], default=None)


def labelled_face_crop(image: np.ndarray, detector: FaceDetector, image_size: int) -> tuple[np.ndarray, bool]:
    """The model input for a labelled image (:func:`agelab.crop.labelled_crop` of its labelled face,
    found at the serving floor), and whether the detector found the face."""
    face = labelled_face(image, detector)
    return labelled_crop(image, None if face is None else face[2], image_size), face is not None


def _encode_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _whole_png(path: str) -> bool:
    """Whether a cached crop is a whole PNG (Pillow's ``verify`` reads every chunk and checks its CRC,
    without decoding the pixels: 0.2 ms a crop). Empty, garbage and truncated files are not."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception:  # noqa: BLE001  whatever Pillow raises, the crop cannot be trusted
        return False
    return True


def _worker(job: tuple[list[tuple[str, str]], int]) -> list[tuple[str, bool, str]]:
    """Make the crops of one chunk: ``[(source, target)]`` -> ``[(source, found, error)]``."""
    from agelab.faces import FaceDetector
    from agelab.images import ImageError, load_image

    pairs, image_size = job
    out = []
    with FaceDetector() as detector:
        for source, target in pairs:
            try:
                pixels, found = labelled_face_crop(load_image(source), detector, image_size)
            except ImageError as err:
                out.append((source, False, str(err)))
                continue
            atomic.write_bytes(target, _encode_png(pixels))
            out.append((source, found, ""))
    return out


def aligned_inputs(
    frame: pd.DataFrame,
    image_size: int,
    log: Callable[[str], None] = print,
    workers: int | None = None,
) -> pd.DataFrame:
    """``frame`` with an ``input`` column: each image's cached aligned crop, made where missing.

    Images that cannot be decoded are dropped (and logged by name).
    """
    if frame.empty:
        return frame.assign(input=pd.Series(dtype=str))
    sources = frame["path"].astype(str)
    folders = {Path(p).parent for p in sources.unique()}
    targets = {}
    for source in sources.unique():
        folder = crop_folder(Path(source).parent, image_size)
        targets[source] = str(folder / (Path(source).name + ".png"))
    damaged = [t for t in set(targets.values()) if Path(t).is_file() and not _whole_png(t)]
    if damaged:
        # A crop that does not decode would fail the run inside tf.data: it is made again instead.
        log(f"{len(damaged):,} cached crops do not decode (e.g. {damaged[0]}); making them again")
        for target in damaged:
            Path(target).unlink(missing_ok=True)
    missing = [(s, t) for s, t in targets.items() if not Path(t).is_file()]
    if missing:
        workers = workers or max(1, min(len(missing) // 200, os.cpu_count() or 1))
        log(
            f"aligning {len(missing):,} faces for training at {image_size} px with the face detector "
            f"({workers} processes; cached in {', '.join(str(crop_folder(f, image_size)) for f in folders)})"
        )
        chunks = [missing[i : i + 500] for i in range(0, len(missing), 500)]
        results: list[tuple[str, bool, str]] = []
        if workers == 1:
            for chunk in chunks:
                results.extend(_worker((chunk, image_size)))
        else:
            import multiprocessing

            # Spawned, not forked: the parent may hold TensorFlow's threads.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                for part in pool.map(_worker, [(chunk, image_size) for chunk in chunks]):
                    results.extend(part)
        found = sum(1 for _, ok, err in results if ok and not err)
        errors = [(s, err) for s, _, err in results if err]
        log(
            f"aligned {len(results) - len(errors):,} faces: the detector found {found:,}; "
            "the rest were placed on the template as crops"
        )
        for _, err in errors:
            log(f"skipped {err}")
    inputs = sources.map(targets)
    present = inputs.map(lambda t: Path(t).is_file())
    return frame.assign(input=inputs)[present.to_numpy()].reset_index(drop=True)
