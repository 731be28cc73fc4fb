"""What can serve a saved model, in one table: its LiteRT twins (file, sidecar record, backend name)
and the backends a ``--backend`` option or the Predict page offers, each with the twins it tries.

:class:`agelab.predictor.Predictor`, :mod:`agelab.model_files`, the export, the verbs' ``--backend``
and the Predict page all read this table; nothing else names a twin's file or record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Twin:
    """A LiteRT twin of ``X.keras``: its file ``X<suffix>``, the sidecar key that records it, and the
    backend name it serves under."""

    precision: str
    suffix: str
    record_key: str
    backend: str

    def path(self, model: str | Path) -> Path:
        return Path(model).with_suffix(self.suffix)


TWINS: dict[str, Twin] = {
    "float32": Twin("float32", ".tflite", "litert", "litert"),
    "int8": Twin("int8", ".int8.tflite", "litert_int8", "litert-int8"),
}


@dataclass(frozen=True)
class Backend:
    """A choice of what serves a model: the twins it tries in order (the faster first) before Keras,
    and how a person reads it."""

    name: str
    twins: tuple[str, ...]
    label: str


BACKEND_TABLE: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "auto", ("int8", "float32"), "Fastest available (int8 LiteRT, else float32 LiteRT, else Keras)"
        ),
        Backend("litert", ("float32",), "LiteRT float32 (equal to Keras within 1e-4)"),
        Backend("litert-int8", ("int8", "float32"), "LiteRT int8 (else float32 LiteRT)"),
        Backend("keras", (), "Keras"),
    )
}
BACKENDS = tuple(BACKEND_TABLE)
# A backend name -> how a person reads it (the Predict page's runtime choice).
BACKEND_LABELS = {name: b.label for name, b in BACKEND_TABLE.items()}
BACKEND_HELP = (
    "what serves the model: auto (its int8 LiteRT twin, else its float32 twin, else Keras), "
    "litert (the float32 twin, equal to Keras within 1e-4), litert-int8, or keras"
)


def twin_path(model: str | Path, precision: str = "float32") -> Path:
    """The file of ``model``'s twin in ``precision``: ``X.tflite`` or ``X.int8.tflite`` beside ``X.keras``."""
    return TWINS[precision].path(model)


def int8_twin_path(model: str | Path) -> Path:
    """``X.int8.tflite`` beside ``X.keras``: the model's int8-quantized LiteRT twin."""
    return twin_path(model, "int8")


def twin_order(backend: str) -> tuple[str, ...]:
    """The precisions of the twins ``backend`` tries, in order, before Keras (none for ``keras``)."""
    if backend not in BACKEND_TABLE:
        raise ValueError(f"backend={backend!r}: choose from {', '.join(BACKENDS)}")
    return BACKEND_TABLE[backend].twins
