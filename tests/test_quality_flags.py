"""Quality flags on real UTKFace photos: one darkened to near black, one shrunk to a thumbnail."""

from __future__ import annotations

import numpy as np
from PIL import Image

from agelab.images import load_image
from agelab.quality_flags import file_flags, flags_sentence, image_flags
from tests.predict_helpers import real_faces


def test_a_darkened_real_face_is_flagged_nearly_black_and_the_original_is_not(utkface_dir, tmp_path):
    source = real_faces(utkface_dir, 1, step=1)[0]
    face = load_image(source)
    assert image_flags(face) == []
    dark = (face.astype(np.float32) * 0.08).astype(np.uint8)  # a face photographed with no light
    Image.fromarray(dark).save(tmp_path / "dark.jpg", quality=95)
    flags = file_flags(tmp_path / "dark.jpg")
    assert len(flags) == 1 and flags[0].startswith("nearly black (mean brightness ")
    assert flags_sentence(flags).startswith("Nearly black") and "may mean nothing" in flags_sentence(flags)


def test_a_real_thumbnail_is_flagged_tiny_and_a_missed_face_is_said(utkface_dir, tmp_path):
    source = real_faces(utkface_dir, 1, step=1)[0]
    Image.open(source).resize((24, 24)).save(tmp_path / "thumb.png")
    assert file_flags(tmp_path / "thumb.png") == ["tiny (24 x 24 px, under 32 px a side)"]
    assert file_flags(source, face_found=False) == ["no face detected in it"]
    assert file_flags(tmp_path / "absent.jpg")[0].endswith("absent.jpg: no such file")
