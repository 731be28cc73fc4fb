"""Hardening: every bad input and fault gets a clear one-sentence message, no traceback,
and the rest of the work goes on. Config values, data folders, caches, run files, ``evaluate``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from agelab import atomic, run_status, runs
from agelab.bins import get_scheme
from agelab.commands import evaluate
from agelab.commands import train as train_command
from agelab.config import ConfigError, build_config, load_config_file
from agelab.data import index_cache_dir, load_index
from agelab.launchers import LocalLauncher
from agelab.paths import PROJECT_ROOT
from agelab.saved_split import load_dataset
from tests.real_data import copy_real_images

LOOP_NAME = "20_0_0_20170101000000000.jpg.chip.jpg"  # a well-formed name on a symlink loop


def strict_json(text: str):
    """JSON as the standard defines it: ``NaN`` and ``Infinity`` are errors."""

    def refuse(name):
        raise ValueError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


def without_dac_override(command: list[str]) -> list[str]:
    """``command`` unable to read a mode-000 file: as root, drop the capabilities that bypass it."""
    if os.geteuid() != 0:
        return command
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: a mode-000 file stays readable")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *command]


@pytest.fixture
def faulty_folder(utkface_dir, tmp_path) -> Path:
    """Six real images, one of them unreadable (mode 000), and two symlink loops (one well named)."""
    folder = tmp_path / "utk"
    images = copy_real_images(utkface_dir, folder, 6, step=3000)
    images[0].chmod(0)
    (folder / LOOP_NAME).symlink_to(folder / "loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to(folder / LOOP_NAME)
    return folder


# ---------------------------------------------------------------- config and the train verb


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", float("nan"), float("inf")])
def test_non_finite_numbers_are_rejected_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"learning_rate.*NaN and infinity"):
        build_config({"learning_rate": value})
    with pytest.raises(ConfigError, match=r"epochs"):
        build_config({"epochs": value})


def test_a_json_config_file_with_nan_is_rejected(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"dropout": NaN}')
    with pytest.raises(ConfigError, match="dropout"):
        build_config(base=load_config_file(path))


def bad_train_calls(tmp_path: Path, data: Path) -> dict[str, list[str]]:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"epochs": 2,')
    empty = tmp_path / "empty"
    empty.mkdir()
    return {
        "learning_rate": [f"data={data}", "learning_rate=nan"],
        "name": [f"data={data}", "name=" + "x" * 300],
        "max_images": [f"data={data}", "max_images=1"],
        "not valid JSON": ["--config", str(bad_json)],
        "no well-named UTKFace image": [f"data={empty}"],
    }


def test_bad_train_arguments_give_one_sentence_and_no_run_folder(utkface_dir, isolated_dirs, capsys):
    data = isolated_dirs / "utk"
    copy_real_images(utkface_dir, data, 30, step=500)
    for expected, argv in bad_train_calls(isolated_dirs, data).items():
        assert train_command.cli(argv) == 2, expected
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err, err
    assert runs.list_runs() == [] and not (isolated_dirs / "runs").exists()


def test_the_train_verb_rejects_nan_in_a_fresh_process(isolated_dirs):
    result = subprocess.run(
        [sys.executable, "-m", "agelab", "train", "learning_rate=nan"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=dict(os.environ), timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "learning_rate" in result.stderr and "Traceback" not in result.stderr


def test_json_written_by_agelab_never_holds_nan(tmp_path):
    path = atomic.write_json(tmp_path / "m.json", {"loss": float("nan"), "acc": [np.float32(0.5), np.inf]})
    assert strict_json(path.read_text()) == {"loss": None, "acc": [0.5, None]}
    assert strict_json(atomic.dumps({"x": np.float64("nan")})) == {"x": None}


# ---------------------------------------------------------------- data folders


def test_index_leaves_out_loops_and_unreadable_files_with_reasons(faulty_folder, isolated_dirs):
    command = [sys.executable, "-m", "agelab", "index", "--data", str(faulty_folder)]
    env = dict(os.environ, AGELAB_CACHE_DIR=str(isolated_dirs / "cache"))
    result = subprocess.run(
        without_dac_override(command), capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    summary = strict_json(result.stdout.strip().splitlines()[-1])
    assert summary["valid"] == 5 and summary["malformed"] == 3 and summary["total"] == 8
    assert "unreadable: " in result.stderr and "Permission denied" in result.stderr
    assert "symbolic link that loops" in result.stderr
    assert "Traceback" not in result.stderr


def test_index_of_a_missing_folder_a_file_and_an_empty_folder(tmp_path, isolated_dirs, capsys):
    from agelab.commands.index import cli

    (tmp_path / "empty").mkdir()
    (tmp_path / "file.jpg").write_bytes(b"x")
    assert cli(["--data", str(tmp_path / "nowhere")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli(["--data", str(tmp_path / "file.jpg")]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    assert cli(["--data", str(tmp_path / "empty")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["valid"] == 0 and "no well-named UTKFace image" in captured.err


def dataset_page(monkeypatch, folder: Path) -> AppTest:
    monkeypatch.setenv("AGELAB_DATA", str(folder))
    return AppTest.from_file(str(PROJECT_ROOT / "pages" / "dataset.py"), default_timeout=120).run()


def test_dataset_page_explains_bad_folders(tmp_path, isolated_dirs, monkeypatch, faulty_folder):
    (tmp_path / "empty").mkdir()
    (tmp_path / "only-bad").mkdir()
    (tmp_path / "only-bad" / "notes.jpg").write_text("x")
    (tmp_path / "file.jpg").write_bytes(b"x")
    at = dataset_page(monkeypatch, tmp_path / "nowhere")
    assert not at.exception and "does not exist" in at.error[0].value and "Errno" not in at.error[0].value
    at = dataset_page(monkeypatch, tmp_path / "file.jpg")
    assert not at.exception and "is a file, not a folder" in at.error[0].value
    for folder in ("empty", "only-bad"):
        at = dataset_page(monkeypatch, tmp_path / folder)
        assert not at.exception, at.exception
        assert "No usable labelled image" in at.warning[0].value
    at = dataset_page(monkeypatch, faulty_folder)  # root reads the mode-000 file; the loop stays
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Valid labels"] == "6"


def test_an_empty_folder_is_refused_at_launch_with_the_reason(tmp_path, isolated_dirs):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no well-named UTKFace image"):
        LocalLauncher().submit({"data": str(tmp_path / "empty")})
    assert runs.list_runs() == []


def test_a_train_page_launch_on_an_empty_folder_says_why(tmp_path, isolated_dirs):
    (tmp_path / "empty").mkdir()
    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "train.py"), default_timeout=60).run()
    next(w for w in app.text_input if w.label == "Dataset folder").set_value(str(tmp_path / "empty"))
    app.button[0].click().run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert any("no well-named UTKFace image" in e for e in errors), errors
    assert not any("max_images" in e or "Traceback" in e for e in errors)


# ---------------------------------------------------------------- caches heal


def test_damaged_index_and_split_caches_are_rebuilt(utkface_dir, isolated_dirs, capsys):
    from agelab.commands.index import cli

    folder = isolated_dirs / "utk"
    copy_real_images(utkface_dir, folder, 40, step=400)
    first = load_dataset(folder)
    cache = index_cache_dir(folder)
    for name in ("meta.json", "split-seed0.parquet"):
        (cache / name).write_bytes(b"\x00garbage{")
        for argv in (["--data", str(folder)], ["--data", str(folder), "--rebuild"]):
            assert cli(argv) == 0, capsys.readouterr().err
            assert json.loads(capsys.readouterr().out)["valid"] == 40
        pd.testing.assert_frame_equal(load_dataset(folder), first)
    (cache / "index.parquet").write_bytes(b"garbage")
    assert load_index(folder).cached is False
    assert load_index(folder).cached is True  # healed: read from the cache again


def test_a_damaged_or_misshapen_features_cache_is_computed_again(utkface_dir, isolated_dirs):
    import keras

    from agelab import pipeline

    folder = isolated_dirs / "utk"
    frame = pd.DataFrame({"path": [str(p) for p in copy_real_images(utkface_dir, folder, 6, step=900)]})
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    key = {"model": "mean", "size": 32}
    first, hit = pipeline.cached_features(model, frame, 32, key)
    assert not hit and first.shape == (6, 3)
    path = pipeline.feature_cache_path(key, sorted(frame["path"]))
    for damage in (b"garbage", path.read_bytes()[:100]):  # garbage, then a truncated file
        path.write_bytes(damage)
        again, hit = pipeline.cached_features(model, frame, 32, key)
        assert not hit and np.allclose(again, first)
    names = np.asarray(sorted(frame["path"]))
    for paths, features in (
        (names, np.zeros((6, 1280), "float32")),  # another backbone's width
        (names[:4], first[:4]),  # fewer rows than images
        (names, np.zeros(6, "float32")),  # not a table of vectors
    ):
        with open(path, "wb") as handle:
            np.savez(handle, paths=paths, features=features)
        again, hit = pipeline.cached_features(model, frame, 32, key)
        assert not hit and np.allclose(again, first)
    assert pipeline.cached_features(model, frame, 32, key)[1] is True


# ---------------------------------------------------------------- run files


def finished_run(name: str) -> Path:
    run_dir = runs.create_run(build_config({"name": name}))
    run_status.write_status(run_dir, status="finished", started=1.0, ended=2.0)
    atomic.write_json(run_dir / "metrics.json", {"test_bin_accuracy": 0.5})
    atomic.write_text(run_dir / "history.csv", "epoch,stage,loss,val_loss\n1,heads,1.0,1.1\n")
    return run_dir


def test_damaged_run_files_mark_only_that_run_which_can_be_deleted(isolated_dirs, tiny_model):
    good = finished_run("good")
    damaged = {
        "metrics.json": (finished_run("metrics"), "[1]"),
        "history.csv": (finished_run("history"), "\x00\x01garbage\n\xff,\n1,2,3,4,5\n"),
        "status.json": (finished_run("status"), '{"status": "fini'),
        "config.json": (finished_run("config"), '{"model": '),
        "NaN test metrics": (finished_run("nan"), '{"test_bin_accuracy": NaN, "test_age_mae": NaN}'),
    }
    for name, (run_dir, text) in damaged.items():
        (run_dir / (name if name.endswith((".json", ".csv")) else "metrics.json")).write_text(
            text, encoding="latin-1"
        )
    listed = {r.name: r for r in runs.list_runs()}
    assert set(listed) == {good.name} | {d.name for d, _ in damaged.values()}  # none vanished
    assert listed[good.name].state == "finished" and not listed[good.name].history.empty
    for name, (run_dir, _) in damaged.items():
        run = listed[run_dir.name]
        assert run.state == "damaged" and name in run.status["error"], (name, run.status)
        assert run.history.empty or name != "history.csv"
    table = runs.runs_table(list(listed.values())).set_index("run")
    assert (table.loc[[d.name for d, _ in damaged.values()], "status"] == "damaged").all()

    from agelab.model_files import available_models  # the Predict page's model list

    for run_dir in (good, damaged["metrics.json"][0], damaged["NaN test metrics"][0]):
        shutil.copy(tiny_model, run_dir / "model.keras")
        shutil.copy(tiny_model.with_suffix(".json"), run_dir / "model.json")
    assert [m.path.name for m in available_models() if m.kind == "run"] == [good.name]

    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "train.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    for run_dir, _ in damaged.values():
        runs.delete_run(run_dir)
    assert [r.name for r in runs.list_runs()] == [good.name]


def test_the_train_page_shows_a_damaged_run_and_its_reason(isolated_dirs):
    run_dir = finished_run("broken")
    (run_dir / "metrics.json").write_text("[1]")
    app = AppTest.from_file(str(PROJECT_ROOT / "pages" / "train.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    assert any("metrics.json holds list" in e.value for e in app.error), [e.value for e in app.error]
    assert app.dataframe[0].value.loc[0, "status"] == "damaged"


# ---------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from agelab.model_files import save_model
    from agelab.models import create_model

    scheme = get_scheme("groups10")
    built = create_model("small_cnn", 64, scheme.num_bins, weights="none", age_head="dex")
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    return save_model(built.model, path, {"bins": scheme.spec, "image_size": 64, "model": "small_cnn"})


def test_evaluate_skips_loops_and_keeps_two_same_named_folders_apart(
    utkface_dir, tmp_path, isolated_dirs, tiny_model, capsys
):
    first, second = tmp_path / "a" / "utk", tmp_path / "b" / "utk"
    copy_real_images(utkface_dir, first, 4, step=2000)
    copy_real_images(utkface_dir, second, 3, step=3000)
    (first / LOOP_NAME).symlink_to(first / LOOP_NAME)
    outs = []
    for folder, n, loops in ((first, 4, 1), (second, 3, 0), (first, 4, 1)):
        assert evaluate.cli(["--model", str(tiny_model), "--data", str(folder)]) == 0
        captured = capsys.readouterr()
        summary = strict_json(captured.out.strip())
        assert summary["n"] == n and summary["skipped_unreadable"] == loops, captured.err
        assert "Traceback" not in captured.err
        outs.append(Path(summary["out"]))
    assert outs[0] == outs[2] != outs[1]  # the same folder again reuses its file; another never overwrites it
    assert len(pd.read_parquet(outs[0])) == 4 and len(pd.read_parquet(outs[1])) == 3


def test_evaluate_out_onto_a_folder_is_refused_before_work(utkface_dir, tmp_path, tiny_model, capsys):
    data = tmp_path / "utk"
    copy_real_images(utkface_dir, data, 2, step=4000)
    assert evaluate.cli(["--model", str(tiny_model), "--data", str(data), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_evaluate_holds_resized_images_not_full_resolution_ones(utkface_dir, tmp_path, tiny_model):
    from agelab.predictor import load_predictor

    predictor = load_predictor(tiny_model)
    face = Image.open(next(utkface_dir.glob("25_1_*.jpg.chip.jpg"))).resize((3000, 3000))
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(10):
        face.save(folder / f"25_1_0_2017010100000000{i}.jpg.chip.jpg", quality=90)
    tracemalloc.start()
    try:
        result = evaluate.evaluate_folder(predictor, folder, batch_size=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(result.predictions) == 10
    # One 3000 px RGB image is 27 MB; holding the batch of ten at full size took 270 MB.
    assert peak < 3 * 3000 * 3000 * 3, peak / 1e6


# ---------------------------------------------------------------- image decoding


def test_a_16_bit_greyscale_png_decodes_to_the_8_bit_pixels(utkface_dir, tmp_path):
    from agelab.images import load_image

    # A photo whose brightest pixel is well below white: scaling by its own maximum brightened it.
    for path in sorted(utkface_dir.glob("2*_1_0_*.jpg.chip.jpg")):
        grey = np.asarray(Image.open(path).convert("L"))
        if grey.max() < 200:
            break
    assert grey.max() < 200
    Image.fromarray(grey).save(tmp_path / "8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "16.png")
    assert Image.open(tmp_path / "16.png").mode.startswith("I")
    eight, sixteen = load_image(tmp_path / "8.png"), load_image(tmp_path / "16.png")
    assert np.array_equal(eight, sixteen)


def test_evaluate_on_a_folder_it_cannot_list_says_so(utkface_dir, tmp_path, tiny_model):
    data = tmp_path / "utk"
    copy_real_images(utkface_dir, data, 2, step=4000)
    data.chmod(0o311)  # enterable, not listable
    try:
        command = [
            sys.executable,
            "-m",
            "agelab",
            "evaluate",
            "--model",
            str(tiny_model),
            "--data",
            str(data),
        ]
        done = subprocess.run(
            without_dac_override(command), capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT
        )
    finally:
        data.chmod(0o755)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot be listed (permission denied)" in done.stderr and "Traceback" not in done.stderr


def test_predict_with_a_model_that_outputs_nan_prints_strict_json(utkface_dir, tmp_path):
    """A model gone NaN still gives valid JSON lines (null), never the invalid ``NaN``."""
    import keras

    from tests.predict_helpers import save_contract_model

    path = save_contract_model(tmp_path / "nan")
    model = keras.models.load_model(path, compile=False)
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    model.save(path)
    image = copy_real_images(utkface_dir, tmp_path / "img", 1, step=5000)[0]
    done = subprocess.run(
        [sys.executable, "-m", "agelab", "predict", "--no-detect", "--model", str(path), str(image)],
        capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    record = strict_json(done.stdout.strip().splitlines()[-1])
    assert record["faces"][0]["age"] is None
