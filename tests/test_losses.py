"""The age-bin loss (agelab.training.losses): one-hot or soft ordinal targets."""

from __future__ import annotations

import numpy as np
import pytest

from agelab.config import ConfigError, build_config
from agelab.training.losses import SoftOrdinalCrossentropy, age_bin_loss, soft_bin_targets

import keras  # noqa: E402  isort: skip


def test_soft_targets_are_distributions_peaked_on_the_true_bin_and_falling_with_distance():
    targets = soft_bin_targets(10, 0.5)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    assert (targets.argmax(axis=1) == np.arange(10)).all()
    middle = targets[5]
    assert middle[4] == pytest.approx(middle[6])
    assert middle[5] > middle[4] > middle[3] > 0
    assert targets[0, 1] > targets[5, 6]  # an end bin gives its one neighbour what two would share
    np.testing.assert_array_equal(soft_bin_targets(10, 0.0), np.eye(10))


def test_the_loss_is_sparse_cross_entropy_without_spread_and_forgives_a_near_miss_with_it():
    labels = np.array([2, 7])
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=2).astype("float32")
    sparse = float(keras.losses.SparseCategoricalCrossentropy()(labels, probs))
    assert isinstance(age_bin_loss(10, 0.0), keras.losses.SparseCategoricalCrossentropy)
    assert float(SoftOrdinalCrossentropy(10, 1e-3)(labels, probs)) == pytest.approx(sparse, rel=1e-5)
    soft = age_bin_loss(10, 0.5)
    near, far = np.full((1, 10), 0.01, "float32"), np.full((1, 10), 0.01, "float32")
    near[0, 4], far[0, 8] = 0.91, 0.91  # true bin 5: one group off, against three off
    label = np.array([5])
    hard = keras.losses.SparseCategoricalCrossentropy()
    assert float(hard(label, near)) == pytest.approx(float(hard(label, far)))
    assert float(soft(label, near)) < float(soft(label, far))


def test_soft_bins_is_a_checked_config_key():
    assert build_config({"soft_bins": "0.5"})["soft_bins"] == 0.5
    assert build_config()["soft_bins"] == 0.0
    with pytest.raises(ConfigError, match="soft_bins takes a number >= 0 and <= 3"):
        build_config({"soft_bins": "-1"})


def test_a_model_compiled_with_the_soft_loss_loads_in_a_fresh_process(tmp_path):
    """A run trained with soft_bins saves the loss in its .keras file: loading it (ensemble, evaluate
    with Keras, the Review page) must not depend on whoever imported the losses module first."""
    import subprocess
    import sys

    # As in a fast run: the heads are a model compiled with the loss (trained on cached features),
    # then nested in the whole model, whose file keeps the heads' compile config.
    features = keras.Input((4,))
    heads = keras.Model(
        features, {"age_bin": keras.layers.Dense(10, activation="softmax", name="age_bin")(features)}
    )
    heads.compile(optimizer="adam", loss={"age_bin": SoftOrdinalCrossentropy(10, 0.75)})
    inputs = keras.Input((4,))
    model = keras.Model(inputs, heads(inputs))
    path = tmp_path / "soft.keras"
    model.save(path)
    code = f"from agelab.model_files import load_keras; print(load_keras({str(path)!r}).count_params())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(model.count_params())
