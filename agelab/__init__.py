"""agelab: age-group and gender prediction from face photos, trained and reviewed on UTKFace."""

import os

from agelab import settings
from agelab.import_order import load_srtp_first
from agelab.paths import keras_home

# Keras reads KERAS_HOME once, at import, so it must be set before anything imports keras.
os.environ["KERAS_HOME"] = str(keras_home())
os.environ["TF_CPP_MIN_LOG_LEVEL"] = settings.get("TF_CPP_MIN_LOG_LEVEL") or "2"

# Before anything can import TensorFlow (see agelab.import_order).
load_srtp_first()

__version__ = "0.1.0"
