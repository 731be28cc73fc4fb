"""The Dataset page's rebalancing preview (agelab.eda.rebalance_preview) on real UTKFace images."""

from __future__ import annotations

import pandas as pd
import pytest

from agelab import eda
from agelab.bins import GROUPS10
from agelab.data import load_index
from tests.real_data import copy_real_images


@pytest.fixture
def faces(utkface_dir, tmp_path, isolated_dirs) -> pd.DataFrame:
    copy_real_images(utkface_dir, tmp_path / "utk", 300, step=60)
    return eda.labelled(load_index(tmp_path / "utk").frame, GROUPS10)


def counts(preview: eda.RebalancePreview, when: str) -> pd.Series:
    rows = preview.table[preview.table["when"] == when]
    return rows.set_index("bin_label")["images"]


def test_undersampling_caps_each_bin_and_keeps_the_before_counts(faces):
    preview = eda.rebalance_preview(faces, GROUPS10, "undersample", target=20)
    before, after = counts(preview, "before"), counts(preview, "after")
    assert before.sum() == len(faces) and list(before.index) == list(GROUPS10.labels)
    assert after.max() == 20 and (after <= before.clip(upper=20)).all()
    assert (after == before.clip(upper=20)).all()  # a bin under the cap keeps every face
    assert preview.title.startswith(f"undersample: {int(after.sum()):,} images kept of {len(faces):,}")


def test_class_weights_give_every_bin_the_same_weight_and_say_the_spread(faces):
    preview = eda.rebalance_preview(faces, GROUPS10, "class_weights", power=1.0)
    after = counts(preview, "after")
    filled = after[counts(preview, "before") > 0]
    assert filled.to_numpy() == pytest.approx([len(faces) / len(filled)] * len(filled))
    assert "a face weighs" in preview.title and f"kept of {len(faces):,}" in preview.title
    half = counts(eda.rebalance_preview(faces, GROUPS10, "class_weights", power=0.5), "after")
    assert half[counts(preview, "before") > 0].std() > filled.std()  # half strength: part of the way


def test_by_ethnicity_has_a_row_per_bin_and_ethnicity(faces):
    preview = eda.rebalance_preview(faces, GROUPS10, "oversample", target=5, by_race=True)
    assert set(preview.table.columns) == {"bin_label", "race_name", "when", "images"}
    before = preview.table[preview.table["when"] == "before"]
    assert before["images"].sum() == len(faces)
    after = preview.table[(preview.table["when"] == "after")].set_index(["bin_label", "race_name"])["images"]
    present = before.set_index(["bin_label", "race_name"])["images"] > 0
    assert (after[present] >= 5).all()  # every cell with a face is filled to the floor
