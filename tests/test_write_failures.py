"""Writes that fail (a full disk, a read-only folder) and files that cannot be read (a twin, a sidecar, a
run folder): one sentence naming the file and what to do, the old files as they were, no traceback.

Every test here needs root to stage its fault (a tmpfs mount, or ``setpriv`` dropping both
``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH``, without which root reads a mode-000 file anyway):
marker ``privileged``, run with ``make test-privileged``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agelab import sweep_records, sweeps
from agelab.commands import calibrate, ensemble, predict
from agelab.commands import export as export_command
from agelab.commands import runs as runs_command
from agelab.commands import sweep as sweep_command
from agelab.litert_serving import sha256
from agelab.paths import PROJECT_ROOT
from tests.fault_helpers import fill, small_tmpfs
from tests.predict_helpers import save_contract_model
from tests.real_data import copy_real_images
from tests.test_faults import without_dac_override

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_contract_model(tmp_path_factory.mktemp("model"), stem="tiny")


@pytest.fixture(scope="module")
def photo(utkface_dir, tmp_path_factory) -> Path:
    return copy_real_images(utkface_dir, tmp_path_factory.mktemp("photo"), 1, step=4000)[0]


@pytest.fixture(scope="module")
def data(utkface_dir, tmp_path_factory) -> Path:
    """40 real images: enough for a validation split to calibrate on."""
    folder = tmp_path_factory.mktemp("data") / "utk"
    copy_real_images(utkface_dir, folder, 40, step=500)
    return folder


@pytest.fixture
def full_disk(tmp_path) -> Path:
    with small_tmpfs(tmp_path / "small") as mount:
        yield mount


def model_copy(model: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".keras", ".json"):
        shutil.copy(model.with_suffix(suffix), folder / f"tiny{suffix}")
    return folder / "tiny.keras"


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "filler"}


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def agelab_without_dac(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agelab", *args]
    return subprocess.run(
        without_dac_override(command), capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600,
        env=dict(os.environ, **(env or {})),
    )  # fmt: skip


def last_line(err: str) -> str:
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


# ---------------------------------------------------------------- a full disk


def test_predict_out_on_a_full_disk(model, photo, full_disk, capsys):
    fill(full_disk)
    out = full_disk / "faces.csv"
    assert predict.cli(["--no-detect", "--model", str(model), "--out", str(out), str(photo)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["faces"]  # the predictions were printed before the table failed
    line = last_line(captured.err)  # after the untrained model's notes on its uncertain face
    assert f"cannot write {out}" in line and "the disk is full" in line
    assert contents(full_disk) == {}


def test_export_on_a_full_disk(model, full_disk, capsys):
    copy = model_copy(model, full_disk / "m")
    before = contents(copy.parent)
    fill(full_disk)
    assert export_command.cli(["--model", str(copy)]) == 1
    assert "the disk is full" in one_line(capsys.readouterr().err)
    assert contents(copy.parent) == before


def test_calibrate_on_a_full_disk(model, data, full_disk, isolated_dirs, capsys):
    copy = model_copy(model, full_disk / "m")
    before = contents(copy.parent)
    fill(full_disk)
    assert calibrate.cli(["--model", str(copy), "--data", str(data)]) == 1
    assert "the disk is full" in one_line(capsys.readouterr().err)
    assert contents(copy.parent) == before


def test_ensemble_out_on_a_full_disk(model, full_disk, capsys):
    out = model_copy(model, full_disk / "m").with_name("ens.keras")
    out.write_bytes(b"the old ensemble")
    fill(full_disk)
    assert ensemble.cli(["--models", str(model), "--out", str(out)]) == 1
    line = one_line(capsys.readouterr().err)
    assert "the disk is full" in line and f"{out} was not changed" in line
    assert out.read_bytes() == b"the old ensemble" and sorted(contents(out.parent)) == [
        "ens.keras",
        "tiny.json",
        "tiny.keras",
    ]


def test_sweep_and_runs_submit_on_a_full_disk(full_disk, isolated_dirs, data, monkeypatch, capsys):
    monkeypatch.setenv("AGELAB_RUNS_DIR", str(full_disk / "runs"))
    (full_disk / "runs" / "sweeps").mkdir(parents=True)
    fill(full_disk)
    assert sweep_command.cli(["seed=0,1", f"data={data}", "model=baseline_cnn", "weights=none"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "no sweep made" in line and "the disk is full" in line
    assert runs_command.cli(["submit", f"data={data}", "model=baseline_cnn", "weights=none"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "no run made" in line and "the disk is full" in line
    assert list((full_disk / "runs").iterdir()) == [full_disk / "runs" / "sweeps"]
    assert list((full_disk / "runs" / "sweeps").iterdir()) == []


# ---------------------------------------------------------------- a read-only folder


@pytest.fixture
def read_only(tmp_path, model) -> Path:
    """A folder holding the model, which the test's processes may not write to."""
    copy = model_copy(model, tmp_path / "ro")
    copy.parent.chmod(0o555)
    yield copy.parent
    copy.parent.chmod(0o755)


def test_predict_out_into_a_read_only_folder(model, photo, read_only):
    out = read_only / "faces.csv"
    done = agelab_without_dac("predict", "--no-detect", "--model", str(model), "--out", str(out), str(photo))
    assert done.returncode == 1, done.stderr[-2000:]
    line = last_line(done.stderr)
    assert f"cannot write {out} (Permission denied)" in line and "choose another place" in line
    assert not out.exists()


def test_export_and_calibrate_in_a_read_only_folder(read_only, data, isolated_dirs):
    before = contents(read_only)
    model = read_only / "tiny.keras"
    done = agelab_without_dac("export", "--model", str(model))
    assert done.returncode == 1, done.stderr[-2000:]
    assert "cannot write" in last_line(done.stderr) and "Permission denied" in last_line(done.stderr)
    done = agelab_without_dac("calibrate", "--model", str(model), "--data", str(data))
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"cannot write {read_only / 'tiny.json'} (Permission denied)" in last_line(done.stderr)
    assert contents(read_only) == before


# ---------------------------------------------------------------- files that cannot be read


def test_an_unreadable_int8_twin_falls_back_with_a_warning(model, photo, tmp_path):
    copy = model_copy(model, tmp_path / "m")
    twin = copy.with_suffix(".int8.tflite")
    twin.write_bytes(b"a twin this user may not read")
    meta = json.loads(copy.with_suffix(".json").read_text())
    meta["litert_int8"] = {"file": twin.name, "sha256": "0" * 64, "keras_sha256": sha256(copy)}
    copy.with_suffix(".json").write_text(json.dumps(meta))
    twin.chmod(0)
    done = agelab_without_dac("predict", "--no-detect", "--model", str(copy), str(photo))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["faces"]
    assert f"{twin} cannot be read (Permission denied)" in done.stderr and "Traceback" not in done.stderr


def test_an_unreadable_sidecar_is_named(model, photo, tmp_path):
    copy = model_copy(model, tmp_path / "m")
    copy.with_suffix(".json").chmod(0)
    done = agelab_without_dac("predict", "--no-detect", "--model", str(copy), str(photo))
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"the sidecar {copy.with_suffix('.json')} cannot be read (Permission denied)" in last_line(
        done.stderr
    )


def test_runs_list_names_a_run_folder_it_cannot_read(isolated_dirs):
    from agelab import runs
    from agelab.config import build_config

    sound = runs.create_run(build_config({"name": "sound"}))
    locked = runs.create_run(build_config({"name": "locked"}))
    locked.chmod(0)
    try:
        done = agelab_without_dac("runs", "list", env={"AGELAB_RUNS_DIR": str(isolated_dirs / "runs")})
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sound.name in done.stdout and locked.name in done.stdout and "damaged" in done.stdout


@pytest.mark.parametrize(("locked_before", "said"), [(False, "cannot be locked"), (True, "was not changed")])
def test_stopping_a_sweep_whose_folder_is_read_only_names_the_sweep(isolated_dirs, locked_before, said):
    sweep_dir = sweeps.create_sweep({"seed": ["0", "1"]}, {"model": "baseline_cnn"}, name="locked")
    if locked_before:  # its lock file made by an earlier change: now the rewrite is what fails
        sweep_records.update_sweep(sweep_dir, lambda sweep: None)
    before = (sweep_dir / "sweep.json").read_bytes()
    sweep_dir.chmod(0o555)
    try:
        done = agelab_without_dac("sweep", "--stop", str(sweep_dir))
    finally:
        sweep_dir.chmod(0o755)
    assert done.returncode == 2, done.stderr[-2000:]
    line = last_line(done.stderr)
    assert f"sweep {sweep_dir.name} {said}" in line and "Permission denied" in line, line
    assert (sweep_dir / "sweep.json").read_bytes() == before
