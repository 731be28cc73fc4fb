"""Known, harmless lines of C++ libraries' logs kept out of the console.

MediaPipe Tasks' LiteRT prints "Sparsity tensors may not yet be fully supported." to the process's
stderr (file descriptor 2, past Python's ``sys.stderr``) once per sparse tensor each time it loads
the full-range face detector (``face_detection_full_range_sparse.tflite``): dozens of lines a photo.
The model runs correctly; the line only buried real messages.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

SPARSITY_NOTICE = "Sparsity tensors may not yet be fully supported"


@contextmanager
def dropped_native_lines(*needles: str) -> Iterator[None]:
    """While inside, what is written to file descriptor 2 is held; after, every line goes through to
    it except those containing one of ``needles``. Nothing else is lost, only delayed."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [
                line
                for line in held.read().splitlines(keepends=True)
                if not any(n.encode() in line for n in needles)
            ]
            if kept:
                os.write(2, b"".join(kept))
