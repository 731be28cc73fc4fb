"""An ensemble is one ordinary model: the mean of its members' (and their mirror views') outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agelab.ensemble import build
from agelab.model_files import ModelError
from agelab.predictor import Predictor
from tests.predict_helpers import IMAGE_SIZE, real_faces, rgb, save_contract_model


def test_the_ensemble_averages_its_members_and_their_mirror_views(tmp_path, utkface_dir):
    first = save_contract_model(tmp_path / "a", seed=0)
    second = save_contract_model(tmp_path / "b", seed=1)
    out = build([first, second], tmp_path / "ens.keras", flip=True)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["ensemble"]["flip"] is True and len(sidecar["ensemble"]["members"]) == 2

    crops = [rgb(p) for p in real_faces(utkface_dir, 4, step=2999)]
    members = [Predictor(first), Predictor(second)]
    ensemble = Predictor(out)
    batch = ensemble.to_batch(crops)
    mirrored = batch[:, :, ::-1].copy()
    views = [m.raw_outputs(b) for m in members for b in (batch, mirrored)]
    got = ensemble.raw_outputs(batch)
    for key in ("age_bin", "age", "prob_female"):
        np.testing.assert_allclose(got[key], np.mean([v[key] for v in views], axis=0), atol=1e-5)
    # The mirror view is in the graph: a mirrored image gets the same answer.
    np.testing.assert_allclose(ensemble.raw_outputs(mirrored)["age_bin"], got["age_bin"], atol=1e-5)


def test_models_that_take_different_inputs_are_not_combined(tmp_path):
    first = save_contract_model(tmp_path / "a")
    other = save_contract_model(tmp_path / "b", bins="decades")
    with pytest.raises(ModelError, match="disagree on bins"):
        build([first, other], tmp_path / "ens.keras")


def test_an_ensemble_given_as_a_member_adds_its_own_members(tmp_path, utkface_dir):
    """How the shipped model grew: (seed 1 + its mirror) and a new run -> both runs, both views, once each."""
    first = save_contract_model(tmp_path / "a", seed=0)
    second = save_contract_model(tmp_path / "b", seed=1)
    inner = build([first], tmp_path / "inner.keras", flip=True)
    grown = build([inner, second], tmp_path / "grown.keras", flip=True)
    direct = build([first, second], tmp_path / "direct.keras", flip=True)
    members = json.loads(grown.with_suffix(".json").read_text())["ensemble"]["members"]
    assert [m["path"] for m in members] == [str(first), str(second)]
    batch = Predictor(direct).to_batch([rgb(p) for p in real_faces(utkface_dir, 3, step=4001)])
    got, want = Predictor(grown).raw_outputs(batch), Predictor(direct).raw_outputs(batch)
    for key in ("age_bin", "age", "prob_female"):
        np.testing.assert_allclose(got[key], want[key], atol=1e-5)


def test_members_trained_at_different_sizes_each_see_the_image_at_their_own(tmp_path, utkface_dir):
    """A 176 px run beside 144 px runs: the ensemble takes the larger input and shrinks it in the graph."""
    import tensorflow as tf

    large = save_contract_model(tmp_path / "a", seed=0)
    small = save_contract_model(tmp_path / "b", seed=1, image_size=IMAGE_SIZE - 16)
    out = build([small, large], tmp_path / "ens.keras")
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["image_size"] == IMAGE_SIZE
    assert [m["image_size"] for m in sidecar["ensemble"]["members"]] == [IMAGE_SIZE - 16, IMAGE_SIZE]

    ensemble = Predictor(out)
    batch = ensemble.to_batch([rgb(p) for p in real_faces(utkface_dir, 3, step=3001)])
    shrunk = tf.image.resize(batch, (IMAGE_SIZE - 16, IMAGE_SIZE - 16), method="bilinear").numpy()
    want = [Predictor(small).raw_outputs(shrunk), Predictor(large).raw_outputs(batch)]
    got = ensemble.raw_outputs(batch)
    for key in ("age_bin", "age", "prob_female"):
        np.testing.assert_allclose(got[key], np.mean([w[key] for w in want], axis=0), atol=1e-5)
