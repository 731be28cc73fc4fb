"""A loaded model that predicts: :class:`Predictor`, ``load_predictor``, and ``predict_image`` for
every face of a photo.

The model's files are found and read by :mod:`agelab.model_files`. A predictor serves from the
model's LiteRT twin when it may (:mod:`agelab.litert_serving`), else from Keras. Every face of a frame goes
through the model in one call to a compiled ``tf.function``: ``model.predict`` per frame was about 3x
slower.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)
from agelab.backends import BACKENDS, TWINS, twin_order, twin_path
from agelab.bins import BinScheme, get_scheme
from agelab.calibration import finalize, raw_predictions
from agelab.crop import model_input
from agelab.faces import FaceDetector
from agelab.model_files import (
    ModelError,
    checked_sidecar,
    find_model,
    load_keras,
    model_stamp,
    read_sidecar,
    sidecar_path,
)
from agelab.uncertainty import framing_reasons, prediction_reasons


@dataclass
class FacePrediction:
    """What one face gets: its age bin with probability and the top 3, an age, a gender."""

    bin: int
    bin_label: str
    bin_prob: float
    top3: list[tuple[str, float]]
    age: float
    gender: str
    gender_prob: float
    prob_female: float
    # Why this prediction should not be trusted, in words (agelab.uncertainty); empty when it can be.
    reasons: list[str] = field(default_factory=list)

    @property
    def uncertain(self) -> bool:
        return bool(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["top3"] = [[label, round(p, 4)] for label, p in self.top3]
        out["uncertain"] = self.uncertain
        return out


class Predictor:
    """A loaded model with its bin scheme and input size. Thread-safe.

    ``backend="auto"`` serves from the model's int8 LiteRT twin (``X.int8.tflite``) when it exists and
    its sidecar record matches, else from its float32 twin (``X.tflite``), else from Keras;
    ``"litert"`` skips the int8 twin, ``"litert-int8"`` asks for it, ``"keras"`` forces Keras. A twin
    that cannot serve falls back to the next one with a warning. ``backend`` and ``backend_note`` say
    which one serves; ``warning`` says why a twin was not used.
    """

    def __init__(self, path: str | Path, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: choose from {', '.join(BACKENDS)}")
        self.model_path = find_model(path)
        self.path = Path(path)
        try:
            self.meta: dict[str, Any] = checked_sidecar(
                read_sidecar(self.model_path), sidecar_path(self.model_path)
            )
        except OSError as err:
            raise ModelError(
                f"the sidecar {sidecar_path(self.model_path)} cannot be read ({err.strerror or err}); "
                "give your user read access to it"
            ) from None
        self.scheme: BinScheme = get_scheme(self.meta["bins"])
        self.image_size = int(self.meta["image_size"])
        self.labels = self.scheme.labels
        self._lock = threading.Lock()
        self._model: Any = None
        self._lite: Any = None
        self._load_backend(backend)
        outputs = self._run(np.zeros((1, self.image_size, self.image_size, 3), np.float32))
        if outputs["age_bin"].shape[1] != self.scheme.num_bins:
            raise ModelError(
                f"{self.model_path}: the model has {outputs['age_bin'].shape[1]} age bins but its sidecar's "
                f"scheme {self.scheme.spec!r} has {self.scheme.num_bins}"
            )

    def _load_backend(self, backend: str) -> None:
        from agelab import litert_serving as litert

        self.backend, self.backend_note, self.warning = "keras", "served by Keras (no LiteRT twin)", None
        if backend == "keras":
            self.backend_note = "served by Keras"
            self._load_keras()
            return
        failed: list[str] = []  # the precisions whose twin could not serve
        problems: list[str] = []
        for precision in twin_order(backend):
            twin = twin_path(self.model_path, precision)
            if not twin.is_file():
                if backend == "litert-int8" and precision == "int8":
                    failed.append(precision)
                    problems.append(f"{twin.name} was not used (it does not exist)")
                continue
            try:
                lite = litert.load_twin(self.model_path, self.meta, precision)
                if lite.image_size != self.image_size:
                    # The .keras file and its sidecar are the model; a twin of another size is the
                    # twin of another model, so it is the twin that must be exported again.
                    raise litert.LiteRTError(
                        f"it takes {lite.image_size} px images, not the model's {self.image_size} px: it is"
                        " the twin of another model"
                    )
            except litert.LiteRTError as exc:
                failed.append(precision)
                problems.append(f"{twin.name} was not used ({exc})")
                continue
            self._lite = lite
            self.backend = TWINS[precision].backend
            self.backend_note = (
                f"served by LiteRT ({twin.name}, {precision}, XNNPACK, {lite.threads} threads)"
            )
            break
        if problems:
            fallback = f"the float32 twin {self._lite.path.name}" if self._lite is not None else "Keras"
            export = "--int8 " if "int8" in failed else ""
            self.warning = (
                f"{'; '.join(problems)}; serving with {fallback} instead. "
                f"Re-export it: python -m agelab export {export}--model {self.model_path}"
            )
            if self._lite is None:
                self.backend_note = f"served by Keras: {'; '.join(problems)}"
            else:
                self.backend_note += f": {'; '.join(problems)}"
            logging.getLogger(__name__).warning("agelab: %s", self.warning)
        if self._lite is None:
            self._load_keras()

    def _load_keras(self) -> None:
        self._model = load_keras(self.model_path)
        shape = tuple(self._model.inputs[0].shape) if getattr(self._model, "inputs", None) else ()
        if len(shape) == 4 and shape[1] is not None and shape[1] != self.image_size:
            raise ModelError(_size_mismatch(self.model_path, self.image_size, int(shape[1])))
        self._call = _compile(self._model, self.image_size)

    @property
    def model(self) -> Any:
        """The Keras model (loaded on first use when the predictor serves from LiteRT)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = load_keras(self.model_path)
        return self._model

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._lite is not None:
            out = self._lite(batch)
        else:
            import tensorflow as tf

            with self._lock:
                out = self._call(tf.constant(batch))
        if not isinstance(out, dict):
            raise ModelError(
                f"{self.model_path} is not an agelab model: it returns one {type(out).__name__}, not the "
                "age_bin, age and gender outputs that `python -m agelab train` saves"
            )
        missing = [k for k in ("age_bin", "age", "gender") if k not in out]
        if missing:
            raise ModelError(f"{self.model_path}: the model does not return {', '.join(missing)}")
        return {k: np.asarray(v) for k, v in out.items()}

    def to_batch(self, crops: list[np.ndarray]) -> np.ndarray:
        """Crops (HxWx3 uint8 RGB, any size) resized to the model's input
        (:func:`agelab.crop.model_input`, as in training), as one float32 batch in 0-255."""
        size = self.image_size
        batch = np.empty((len(crops), size, size, 3), np.float32)
        for i, crop in enumerate(crops):
            try:
                batch[i] = model_input(crop, size)
            except ValueError as err:
                raise ValueError(f"crop {i}: {err}") from None
        return batch

    @property
    def single_views(self) -> bool:
        """Whether :meth:`raw_view` can run one view of a mirror-averaged model alone (its LiteRT twin
        holds one view; a Keras model averages both inside its graph)."""
        return self._lite is not None and self._lite.mirror_views

    def raw_view(self, batch: np.ndarray, mirrored: bool) -> dict[str, np.ndarray]:
        """One view's raw outputs (:meth:`raw_outputs`' keys): the mean of this and the other view is
        :meth:`raw_outputs`. Only when :attr:`single_views`."""
        if not self.single_views:
            raise ModelError(f"{self.model_path}: its backend averages the mirror view inside the model")
        return raw_predictions({k: np.asarray(v) for k, v in self._lite.view(batch, mirrored).items()})

    def calibrated(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:meth:`predict_batch`'s outputs from raw ones (the temperatures, the age inside its group)."""
        return finalize(raw, self.scheme, self.meta.get("calibration"))

    def raw_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The model's own outputs for a batch from :meth:`to_batch`, before calibration: ``age_bin`` (N, K),
        ``age`` (N,), ``prob_female`` (N,)."""
        return raw_predictions(self._run(batch))

    def predict_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The predictions for a batch from :meth:`to_batch`: ``age_bin`` (N, K) calibrated probabilities, ``age``
        (N,) the years head's age, ``prob_female`` (N,)
        (:func:`agelab.calibration.finalize`)."""
        if len(batch) == 0:
            k = self.scheme.num_bins
            empty = np.zeros(0)
            return {
                "age_bin": np.zeros((0, k), np.float32),
                "age": empty,
                "prob_female": empty,
            }
        return self.calibrated(self.raw_outputs(batch))

    def predict_crops(self, crops: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Predict every crop (HxWx3 uint8 RGB, any size) in one batched call."""
        return self.predict_batch(self.to_batch(crops))

    def describe(
        self, outputs: dict[str, np.ndarray], i: int, framing: list[str] | None = None
    ) -> FacePrediction:
        """The readable result for face ``i`` of :meth:`predict_crops`'s outputs; ``framing`` adds the
        face's own reasons for doubt (:func:`agelab.uncertainty.framing_reasons`)."""
        probs = outputs["age_bin"][i]
        order = np.argsort(-probs)
        best = int(order[0])
        prob_female = float(outputs["prob_female"][i])
        female = prob_female >= 0.5
        gender_prob = prob_female if female else 1.0 - prob_female
        reasons = prediction_reasons(
            self.scheme, best, float(probs[best]), float(outputs["age"][i]), gender_prob
        )
        reasons += framing or []
        return FacePrediction(
            bin=best,
            bin_label=self.labels[best],
            bin_prob=float(probs[best]),
            top3=[(self.labels[int(j)], float(probs[j])) for j in order[:3]],
            age=float(outputs["age"][i]),
            gender="female" if female else "male",
            gender_prob=gender_prob,
            prob_female=prob_female,
            reasons=reasons,
        )

    def describe_all(self, outputs: dict[str, np.ndarray]) -> list[FacePrediction]:
        return [self.describe(outputs, i) for i in range(len(outputs["age"]))]


def _size_mismatch(path: Path, sidecar_size: int, model_size: int) -> str:
    return (
        f"{path}: its sidecar {sidecar_path(path).name} says image_size {sidecar_size} but the model "
        f"takes {model_size}x{model_size} images; set image_size to {model_size} in the sidecar"
    )


def _compile(model: Any, image_size: int) -> Any:
    import tensorflow as tf

    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32)

    # One trace for every batch size: the batch dimension is left open.
    @tf.function(input_signature=[spec], reduce_retracing=True)
    def call(images: Any) -> Any:
        return model(images, training=False)

    return call


_CACHE: dict[tuple[str, float, str], Predictor] = {}
_CACHE_LOCK = threading.Lock()


def load_predictor(path: str | Path, backend: str = "auto") -> Predictor:
    """The model that ``path`` names (:func:`agelab.model_files.find_model`) served by ``backend``
    (:class:`Predictor`), loaded once and cached.

    A model rewritten since it was loaded (its ``.keras``, sidecar or ``.tflite`` twins) is loaded again.
    """
    model = find_model(path)
    key = (str(model.resolve()), model_stamp(model), backend)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = Predictor(path, backend)
        return _CACHE[key]


@dataclass
class FaceResult:
    """A face found in an image (or the whole image, with ``box`` covering it) and its prediction."""

    box: tuple[int, int, int, int]
    score: float | None
    prediction: FacePrediction
    crop: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        p = self.prediction
        return {
            "box": list(self.box),
            "score": None if self.score is None else round(self.score, 4),
            "bin": p.bin,
            "bin_label": p.bin_label,
            "bin_prob": round(p.bin_prob, 4),
            "top3": [[label, round(prob, 4)] for label, prob in p.top3],
            "age": round(p.age, 1),
            "gender": p.gender,
            "gender_prob": round(p.gender_prob, 4),
            "uncertain": p.uncertain,
            "reasons": p.reasons,
        }


def predict_image(
    image: np.ndarray,
    detector: FaceDetector | None,
    predictor: Predictor,
    min_score: float = 0.5,
    timestamp_ms: int | None = None,
) -> list[FaceResult]:
    """Every face of ``image`` with its prediction, best detection first.

    With ``detector=None`` the whole image is one face crop. An image with no face gives ``[]``.
    """
    if detector is None:
        height, width = image.shape[:2]
        boxes, scores, crops = [(0, 0, width, height)], [None], [image]
        framings: list[list[str]] = [[]]
    else:
        faces = detector.detect(image, min_score=min_score, timestamp_ms=timestamp_ms)
        boxes, scores, crops = [f.box for f in faces], [f.score for f in faces], [f.crop for f in faces]
        framings = [framing_reasons(f.box, f.keypoints) for f in faces]
    if not crops:
        return []
    outputs = predictor.predict_crops(crops)
    return [
        FaceResult(box, score, predictor.describe(outputs, i, framing), crop)
        for i, (box, score, crop, framing) in enumerate(zip(boxes, scores, crops, framings))
    ]
