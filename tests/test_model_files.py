"""agelab.model_files: the one place a model is found from a spec and its sidecar is read and written.

Finding needs only the files to exist, so most models here are empty placeholders; loading is covered
by test_predict and test_litert with real Keras models.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agelab import atomic
from agelab.model_files import (
    DEFAULT_MODEL_NAME,
    ModelError,
    find_model,
    model_and_sidecar,
    model_stamp,
    read_sidecar,
    record_in_sidecar,
    twin_path,
)

SIDECAR = {"bins": "groups10", "image_size": 64, "model": "tiny"}


def placeholder(path: Path, sidecar: dict | None = SIDECAR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    if sidecar is not None:
        atomic.write_json(path.with_suffix(".json"), sidecar)
    return path


@pytest.fixture
def dirs(isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGELAB_MODELS_DIR", str(isolated_dirs / "models"))
    return isolated_dirs


def test_a_spec_is_a_keras_file_a_run_folder_a_run_name_a_bare_stem_or_default(dirs: Path) -> None:
    shipped = placeholder(dirs / "models" / DEFAULT_MODEL_NAME)
    run_model = placeholder(dirs / "runs" / "tiny-1" / "model.keras")
    assert find_model(shipped) == shipped
    assert find_model(str(shipped.with_suffix(""))) == shipped
    assert find_model(run_model.parent) == run_model
    assert find_model("tiny-1") == run_model  # the name of a run under the runs folder
    assert find_model("default") == shipped
    assert model_and_sidecar("tiny-1") == (run_model, run_model.with_suffix(".json"))
    assert twin_path(run_model) == run_model.parent / "model.tflite"


def test_default_without_a_shipped_model_is_the_newest_finished_run(dirs: Path) -> None:
    run_model = placeholder(dirs / "runs" / "tiny-1" / "model.keras")
    atomic.write_json(run_model.parent / "config.json", {"model": "tiny", "bins": "groups10"})
    atomic.write_json(run_model.parent / "status.json", {"status": "finished", "created": 1.0})
    assert find_model("default") == run_model
    (run_model.parent / "status.json").unlink()
    (run_model.parent / "config.json").unlink()
    with pytest.raises(ModelError, match="no default model"):
        find_model("default")


def test_a_spec_that_names_no_model_says_what_to_give(dirs: Path) -> None:
    (dirs / "runs" / "unfinished-1").mkdir(parents=True)
    with pytest.raises(ModelError, match=r"no model file model\.keras \(has the run finished\?\)"):
        find_model(dirs / "runs" / "unfinished-1")
    with pytest.raises(ModelError, match=r"no model file nope\.keras"):
        find_model(dirs / "nope.keras")
    with pytest.raises(ModelError, match="give a run folder or a .keras file"):
        find_model(dirs / "model.h5")
    lone = placeholder(dirs / "lone.keras", sidecar=None)
    with pytest.raises(ModelError, match="has no sidecar lone.json"):
        model_and_sidecar(lone)


def test_a_sidecar_is_json_with_the_keys_every_consumer_needs(dirs: Path) -> None:
    model = placeholder(dirs / "m.keras")
    assert read_sidecar(model) == SIDECAR
    model.with_suffix(".json").write_text('{"bins": ')
    with pytest.raises(ModelError, match="not valid JSON"):
        read_sidecar(model)
    model.with_suffix(".json").write_text(json.dumps({"bins": "groups10"}))
    with pytest.raises(ModelError, match="lacks image_size"):
        read_sidecar(model)


def test_recording_in_a_sidecar_keeps_the_rest_and_moves_the_stamp(dirs: Path) -> None:
    model = placeholder(dirs / "m.keras")
    old = model_stamp(model) - 10
    for path in (model, model.with_suffix(".json")):
        os.utime(path, (old, old))
    assert model_stamp(model) == old
    record_in_sidecar(model, "calibration", {"gender_temperature": 1.5})
    assert read_sidecar(model) == {**SIDECAR, "calibration": {"gender_temperature": 1.5}}
    assert model_stamp(model) > old
    twin = twin_path(model)
    twin.write_bytes(b"")
    os.utime(twin, (old + 100, old + 100))
    assert model_stamp(model) == old + 100  # a re-exported twin reloads the model too


def test_a_sidecar_from_before_the_renaming_reads_under_todays_scheme_name(dirs: Path) -> None:
    # The shipped model and older runs were saved with bins "seed10"; an ensemble of an old and a new
    # run must see the same scheme.
    old = placeholder(dirs / "old.keras", {**SIDECAR, "bins": "seed10"})
    new = placeholder(dirs / "new.keras")
    assert read_sidecar(old)["bins"] == read_sidecar(new)["bins"] == "groups10"
    edges = placeholder(dirs / "edges.keras", {**SIDECAR, "bins": "0,3,13,20,40,60"})
    assert read_sidecar(edges)["bins"] == "0,3,13,20,40,60"
