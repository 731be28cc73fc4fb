"""Labels that look wrong: confident learning (Northcutt, Jiang and Chuang, "Confident Learning:
Estimating Uncertainty in Dataset Labels", JAIR 2021) over out-of-fold predictions.

Each face of the training and validation splits is predicted by a model that never saw it: k folds
of linear heads on the frozen backbone's cached features, so the whole pass costs one feature
extraction. A label is suspect when the out-of-fold prediction puts another class above that
class's own confidence threshold (the mean confidence of the faces labelled with it). Age groups are
ordinal, and a neighbouring group is a judgement call rather than a wrong label, so an age label is
suspect only when the confident group is two or more groups away.

Why not the ``cleanlab`` package: it is AGPL-3.0, which would bind everyone who ships agelab; the
two rules used here (per-class thresholds, normalised-margin ranking) are its ``confident_joint``
and ``normalized_margin`` in a few lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from agelab.bins import BinScheme

# An age label is suspect only when the confident group is this many groups away or more.
AGE_GROUPS_AWAY = 2
COLUMNS = ["suspect", "quality", "model_bin", "model_female", "age_quality", "gender_quality"]


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """``(n, num_classes)``: each row predicted by linear heads fitted on the other folds only."""
    labels = np.asarray(labels, dtype=int)
    probs = np.zeros((len(labels), num_classes))
    counts = np.bincount(labels, minlength=num_classes)
    # A class rarer than the folds cannot be stratified: its faces go round the folds in order.
    splits = min(folds, max(2, int(counts[counts > 0].min()))) if (counts > 0).any() else folds
    splitter = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    for train, held_out in splitter.split(features, labels):
        # 128 principal components keep what a linear head uses and make the k fits take seconds.
        components = min(128, features.shape[1], len(train) - 1)
        model = make_pipeline(
            StandardScaler(), PCA(components, random_state=seed), LogisticRegression(max_iter=500, C=0.5)
        )
        model.fit(features[train], labels[train])
        probs[np.ix_(held_out, model.classes_)] = model.predict_proba(features[held_out])
    return probs


def confident_learning(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(confident class, quality)`` per face: the class its prediction confidently says (its given
    label when none other does), and the normalised margin ``p[label] - max other p`` (low: suspect)."""
    labels = np.asarray(labels, dtype=int)
    n, k = probs.shape
    thresholds = np.array([probs[labels == j, j].mean() if (labels == j).any() else np.inf for j in range(k)])
    above = probs >= thresholds
    confident = np.where(above.any(axis=1), np.where(above, probs, -1.0).argmax(axis=1), labels)
    others = probs.copy()
    others[np.arange(n), labels] = -np.inf
    quality = probs[np.arange(n), labels] - others.max(axis=1)
    return confident, quality, thresholds


@dataclass
class LabelIssues:
    """Every face with ``suspect`` ("age", "gender", "age and gender" or ""), its ``quality`` (lowest
    first) and what the out-of-fold model says (``model_bin``, ``model_female``), most suspect first."""

    table: pd.DataFrame

    def suspects(self) -> pd.DataFrame:
        return self.table[self.table["suspect"] != ""]

    def top(self, share: float) -> pd.DataFrame:
        """The ``share`` of all faces ranked most suspect."""
        return self.table.head(max(1, int(round(share * len(self.table)))))


def find_label_issues(
    frame: pd.DataFrame, features: np.ndarray, scheme: BinScheme, folds: int = 5, seed: int = 0
) -> LabelIssues:
    """Rank ``frame``'s faces (rows aligned with ``features``) by how likely their labels are wrong."""
    bins = scheme.bin_of(frame["age"].to_numpy())
    gender = frame["gender"].to_numpy().astype(int)
    bin_probs = out_of_fold_probabilities(features, bins, scheme.num_bins, folds, seed)
    gender_probs = out_of_fold_probabilities(features, gender, 2, folds, seed)
    model_bin, _, _ = confident_learning(bins, bin_probs)
    model_gender, _, _ = confident_learning(gender, gender_probs)
    age_suspect = np.abs(model_bin - bins) >= AGE_GROUPS_AWAY
    gender_suspect = model_gender != gender
    # Ranked by self-confidence: the probability given to the label, for age the label's group and its
    # neighbours (being one group off is not a wrong label).
    near = np.abs(np.arange(scheme.num_bins)[None, :] - bins[:, None]) < AGE_GROUPS_AWAY
    age_quality = (bin_probs * near).sum(axis=1)
    gender_quality = gender_probs[np.arange(len(gender)), gender]
    suspect = np.select(
        [age_suspect & gender_suspect, age_suspect, gender_suspect], ["age and gender", "age", "gender"], ""
    )
    # One score per face: the worse of its two margins among the labels that are suspect.
    quality = np.minimum(
        np.where(age_suspect, age_quality, 1.0), np.where(gender_suspect, gender_quality, 1.0)
    )
    table = frame.reset_index(drop=True).assign(
        suspect=suspect,
        # Qualities lie in [0, 1]: faces with no suspect label are shifted behind every suspect one.
        quality=np.where(suspect != "", quality, 1.0 + np.minimum(age_quality, gender_quality)),
        model_bin=model_bin,
        model_female=gender_probs[:, 1],
        age_quality=age_quality,
        gender_quality=gender_quality,
    )
    return LabelIssues(table.sort_values("quality", kind="stable").reset_index(drop=True))


# The backbone whose frozen features the finder's heads read: the face-pretrained one where its weights
# are present (its features know faces), else the small ImageNet MobileNet every setup has.
FACE_BACKBONE = {"model": "face_mobilenet", "alpha": 0.0, "image_size": 128}
IMAGENET_BACKBONE = {"model": "mobilenet_v2", "alpha": 0.35, "image_size": 112}


def finder_backbone() -> dict:
    from agelab.models import FACE_MODEL, weights_file

    path = weights_file(FACE_MODEL, 1.0)
    return FACE_BACKBONE if path is not None and path.is_file() else IMAGENET_BACKBONE


def training_label_issues(
    data: str | None = None, scheme: BinScheme | None = None, log: Callable[[str], None] = print
) -> LabelIssues:
    """The label issues of ``data=``'s training and validation splits (the test split is never
    cleaned: it is what every run is scored on). The features are computed once per image set and
    cached; the folds take seconds after that."""
    from agelab import models, pipeline
    from agelab.bins import GROUPS10
    from agelab.crop_cache import aligned_inputs
    from agelab.data_sources import load_data

    scheme = scheme or GROUPS10
    frame = load_data(data)
    frame = frame[frame["split"].isin(["train", "val"])].reset_index(drop=True)
    backbone = finder_backbone()
    size = backbone["image_size"]
    frame = aligned_inputs(frame, size, log)
    built = models.create_model(
        backbone["model"], size, scheme.num_bins, alpha=backbone["alpha"], weights="imagenet"
    )
    key = {
        "model": backbone["model"],
        "alpha": f"a{backbone['alpha']:g}",
        "size": size,
        "weights": "imagenet",
    }
    log(
        f"label review: {len(frame):,} training and validation faces, features of {backbone['model']} at {size} px"
    )
    features, _ = pipeline.cached_features(built.features, frame, size, key)
    return find_label_issues(frame, features, scheme)
