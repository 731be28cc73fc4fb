"""Per-epoch scalars as TensorBoard event files."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np


class ScalarEvents:
    """Per-epoch scalars as TensorBoard event files under ``tb/train`` and ``tb/validation``.

    Written with TensorFlow's own TFRecord writer and protos, because ``tf.summary`` needs the
    separate tensorboard package, which a training machine may lack.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._writers: dict[str, Any] = {}

    def _writer(self, kind: str) -> Any:
        if kind not in self._writers:
            import tensorflow as tf
            from tensorflow.core.util import event_pb2

            (self.folder / kind).mkdir(parents=True, exist_ok=True)
            name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
            writer = tf.io.TFRecordWriter(str(self.folder / kind / name))
            writer.write(
                event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
            )
            self._writers[kind] = writer
        return self._writers[kind]

    def write(self, step: int, logs: dict[str, float]) -> None:
        from tensorflow.core.framework import summary_pb2
        from tensorflow.core.util import event_pb2

        for kind in ("train", "validation"):
            values = [
                summary_pb2.Summary.Value(tag="epoch_" + key.removeprefix("val_"), simple_value=value)
                for key, value in logs.items()
                if key.startswith("val_") == (kind == "validation") and np.isfinite(value)
            ]
            if values:
                event = event_pb2.Event(
                    wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)
                )
                writer = self._writer(kind)
                writer.write(event.SerializeToString())
                writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
