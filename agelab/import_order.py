"""The one import-order rule agelab keeps: pylibsrtp before TensorFlow, Keras and MediaPipe.

pylibsrtp (which streamlit-webrtc loads through aiortc) crashes the whole process with a segfault
when it is imported after TensorFlow or MediaPipe, and works when imported before them. A crash on
the live webcam page would take the dashboard down for every session, so ``import agelab`` loads
pylibsrtp first, and code that may run before agelab is imported (the Predict page, the face
detector, bench scripts) calls :func:`load_srtp_first` itself. Everything about the rule is here;
nothing else imports pylibsrtp.
"""

from __future__ import annotations

import contextlib
import sys

# Modules after which importing pylibsrtp crashes the process.
SRTP_CONFLICTS = ("tensorflow", "mediapipe", "keras")


def webrtc_importable() -> bool:
    """Whether streamlit-webrtc can still be imported in this process without crashing it."""
    return "pylibsrtp" in sys.modules or not any(name in sys.modules for name in SRTP_CONFLICTS)


def load_srtp_first() -> None:
    """Import pylibsrtp (if installed) while it is still safe, so that the webcam keeps working.

    Does nothing once a conflicting module is loaded: importing it then is the crash itself.
    """
    if webrtc_importable():
        with contextlib.suppress(ImportError):
            import pylibsrtp  # noqa: F401
