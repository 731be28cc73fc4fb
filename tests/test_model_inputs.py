"""One decision of which crop a model eats (agelab.model_inputs), on real UTKFace images and the
shipped models' sidecars."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from PIL import Image

from agelab.model_inputs import model_inputs, uses_aligned_crops
from agelab.paths import PROJECT_ROOT


def test_the_shipped_models_eat_aligned_crops_and_a_run_config_says_its_own():
    for name in ("agelab-default", "agelab-fast"):
        meta = json.loads((PROJECT_ROOT / "models" / f"{name}.json").read_text())
        assert uses_aligned_crops(meta), name
    assert not uses_aligned_crops({"crop": "whole", "image_size": 64})
    assert not uses_aligned_crops({"image_size": 64})  # a sidecar from before crops were recorded


def test_whole_image_models_get_the_files_as_they_are(utkface_dir):
    files = sorted(utkface_dir.glob("*.jpg"))[:3]
    frame = pd.DataFrame({"path": [str(f) for f in files]}, index=[5, 7, 9])
    out = model_inputs(frame, {"crop": "whole", "image_size": 64})
    assert out["input"].tolist() == [str(f) for f in files]
    assert out.index.tolist() == [0, 1, 2]


def test_aligned_models_get_their_cached_crop_at_their_size(
    utkface_dir, isolated_dirs, tmp_path, detector_env
):
    folder = tmp_path / "faces"
    folder.mkdir()
    for source in sorted(utkface_dir.glob("*.jpg"))[:2]:
        shutil.copy(source, folder / source.name)
    frame = pd.DataFrame({"path": [str(f) for f in sorted(folder.glob("*.jpg"))]})
    out = model_inputs(frame, {"crop": "aligned", "image_size": 48}, log=lambda _: None)
    assert len(out) == 2
    for crop in out["input"]:
        assert crop.startswith(str(isolated_dirs / "cache")) and crop.endswith(".png")
        with Image.open(crop) as image:
            assert image.size == (48, 48)
