"""The pretrained backbones' weight files: where each lives (``KERAS_HOME/models``) and fetching a
missing ImageNet one, once, from where Keras would.

It imports nothing heavy, so a launch checks a config's weights before it makes a run folder without
loading TensorFlow, and a run never starts only to fail on a download.
"""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

from agelab import atomic
from agelab.assets import FACE_WEIGHTS
from agelab.paths import keras_home

# The face-pretrained MobileNet (alpha 1.0); ``python -m agelab setup`` puts its weights file under
# KERAS_HOME/models (agelab.assets). It has no download of its own here.
FACE_MODEL = "face_mobilenet"
# The file each keras.applications backbone looks for under KERAS_HOME/models.
APPLICATION_FILES: dict[str, str] = {
    "mobilenet_v2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224_no_top.h5",
    "mobilenet": "mobilenet_{alpha_v1}_224_tf_no_top.h5",
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "efficientnetb0": "efficientnetb0_notop.h5",
}
# Where Keras downloads each backbone's file from (keras/src/applications).
ORIGINS: dict[str, str] = {
    "mobilenet_v2": "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/",
    "mobilenet": "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/",
    "vgg16": "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/",
    "resnet50": "https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
    "efficientnetb0": "https://storage.googleapis.com/keras-applications/",
}
DOWNLOAD_TIMEOUT_S = 60
# Every HDF5 file starts with these bytes; an error page saved in its place does not.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class WeightsUnavailable(RuntimeError):
    """Pretrained weights that are neither on this machine nor downloadable; the message names the file."""


def weights_file(model_name: str, alpha: float) -> Path | None:
    """Where the pretrained weights of ``model_name`` are kept; None for models without any."""
    if model_name == FACE_MODEL:
        return keras_home() / "models" / FACE_WEIGHTS
    if model_name not in APPLICATION_FILES:
        return None
    alpha_v1 = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}.get(alpha, "")
    alpha_v2 = f"{alpha:g}" if alpha not in (1.0,) else "1.0"
    return keras_home() / "models" / APPLICATION_FILES[model_name].format(alpha=alpha_v2, alpha_v1=alpha_v1)


def available_weights(model_name: str, alpha: float) -> Path:
    """The pretrained weights file of ``model_name``: the one on this machine, else an ImageNet file
    downloaded once. Raises :class:`WeightsUnavailable` naming the file to supply when neither works."""
    path = weights_file(model_name, alpha)
    if path is None:
        raise ValueError(f"{model_name} has no pretrained weights")
    if path.is_file():
        return path
    if model_name == FACE_MODEL:
        raise WeightsUnavailable(
            f"the face-pretrained weights {FACE_WEIGHTS} are not in {path.parent}: run "
            "`python -m agelab setup` (with AGELAB_MIRROR set to a folder holding keras/face/), "
            "or pass weights=none to start from random weights"
        )
    url = ORIGINS[model_name] + path.name
    try:
        atomic.write_with(path, lambda tmp: _download(url, tmp))
    except (OSError, ValueError) as err:
        reason = str(getattr(err, "reason", "") or err).splitlines()[0][:200] or type(err).__name__
        raise WeightsUnavailable(
            f"the ImageNet weights of {model_name}, {path.name}, are not in {path.parent} and could not be "
            f"downloaded from {url} ({reason}): run `python -m agelab setup` with internet, put that file "
            "in that folder, or pass weights=none to start from random weights"
        ) from None
    return path


def _download(url: str, target: Path) -> None:
    # A fresh opener reads the proxy settings now; urlopen's shared one keeps those of its first use.
    opener = urllib.request.build_opener()
    with opener.open(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(target, "wb") as out:
        shutil.copyfileobj(response, out)
    with open(target, "rb") as written:
        if written.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            raise ValueError(f"what {url} sent is not an HDF5 weights file")
