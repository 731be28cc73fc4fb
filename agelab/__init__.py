"""agelab: age-group and gender prediction from face photos, trained and reviewed on UTKFace."""

import contextlib
import os

from agelab.paths import keras_home

# Keras reads KERAS_HOME once, at import, so it must be set before anything imports keras.
os.environ.setdefault("KERAS_HOME", str(keras_home()))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylibsrtp (streamlit-webrtc -> aiortc) segfaults when it is imported after TensorFlow or
# MediaPipe, which would take the whole dashboard down on the Live webcam page.
with contextlib.suppress(ImportError):
    import pylibsrtp  # noqa: F401

__version__ = "0.1.0"
