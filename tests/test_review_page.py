"""The Review page, run through AppTest on the predictions of a real tiny training run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from agelab import marks
from agelab.bins import get_scheme
from agelab.commands.evaluate import cli as evaluate_cli
from agelab.data import RACES
from agelab.evaluation.gallery import page_count, tile_lines, tile_markdown
from agelab.evaluation.metrics import SLICE_DIMENSIONS, headline
from agelab.evaluation.predictions import with_derived_columns
from agelab.evaluation.sources import evaluations_dir
from agelab.paths import PROJECT_ROOT

PAGE = str(PROJECT_ROOT / "pages" / "review.py")
TINY_RUN = {
    "model": "small_cnn",
    "weights": "none",
    "image_size": 64,
    "epochs": 1,
    "max_images": 400,
    "augment": False,
    "batch_size": 32,
    "name": "tiny",
    "crop": "none",  # the images as they are: no face detector in the isolated models folder
}


@pytest.fixture(scope="module")
def tiny_run(utkface_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real run (1 epoch of small_cnn on 400 real images) with its test-split predictions.

    Runs and caches live in a temporary folder for the whole module.
    """
    from agelab.training.verb import train

    root = tmp_path_factory.mktemp("review")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGELAB_RUNS_DIR", str(root / "runs"))
        patch.setenv("AGELAB_CACHE_DIR", str(root / "cache"))
        # No shipped model here: these tests review the tiny run, which must be the default pick.
        patch.setenv("AGELAB_MODELS_DIR", str(root / "models"))
        run_dir = train({**TINY_RUN, "data": str(utkface_dir)})
        yield run_dir


@pytest.fixture
def truth(tiny_run: Path) -> pd.DataFrame:
    """The run's predictions with distances, computed here with plain pandas."""
    table = pd.read_parquet(tiny_run / "predictions.parquet")
    table["d"] = table["pred_bin"] - table["true_bin"]
    return table


def open_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["rv_view"] = "Test-split mistakes"  # past the opening view, the training labels
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def matching(at: AppTest) -> int:
    text = next(m.value for m in at.markdown if "images match" in m.value)
    return int(text.split("**")[1].replace(",", ""))


def gallery_captions(at: AppTest) -> list[str]:
    """Tile texts between the "Gallery" and "Confident mistakes" headings, in page order."""
    captions, inside = [], False
    for node in at.main:
        if getattr(node, "type", None) == "subheader":
            inside = node.value == "Gallery"
        elif inside and getattr(node, "type", None) == "caption" and node.value.startswith("true: "):
            captions.append(node.value)
    return captions


def tile_file(caption: str) -> str:
    return caption.rsplit("`", 2)[1]


def expected_captions(rows: pd.DataFrame, scheme: str) -> list[str]:
    prepared = with_derived_columns(rows, scheme)
    return sorted(tile_markdown(r) for _, r in prepared.iterrows())


def most_wrong_first(truth: pd.DataFrame) -> list[str]:
    """File names by bins off, then the predicted bin's probability, computed with plain pandas."""
    probs = truth[[f"bin_prob_{k}" for k in range(10)]].to_numpy()
    table = truth.assign(
        off=truth["d"].abs(),
        conf=probs[np.arange(len(truth)), truth["pred_bin"].to_numpy()],
        file=truth["path"].map(lambda p: Path(p).name),
    )
    return table.sort_values(["off", "conf"], ascending=False, kind="stable")["file"].tolist()


def test_headline_matches_the_runs_own_metrics(tiny_run: Path, truth: pd.DataFrame) -> None:
    at = open_page()
    assert at.selectbox(key="rv_source").value == tiny_run.name
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == f"{len(truth):,}"
    # Training wrote its own summary; the page's numbers must agree with it.
    recorded = pd.read_json(tiny_run / "metrics.json", typ="series")
    assert metrics["Exact bin"] == f"{recorded['test_bin_accuracy']:.1%}"
    assert metrics["Within 1 bin"] == f"{recorded['test_within_one_bin']:.1%}"
    # metrics.json keeps 3 places (22.575) and the page rounds the exact MAE to 2 (22.5751 -> 22.58).
    assert abs(float(metrics["Age MAE"].removesuffix(" y")) - recorded["test_age_mae"]) <= 0.0051
    assert matching(at) == len(truth)
    slices = at.dataframe[0].value
    assert set(slices["slice"]) == set(SLICE_DIMENSIONS)
    assert "exact_lo" not in slices.columns and "exact CI" in slices.columns
    overall = slices[slices["slice"] == "all"].iloc[0]
    assert overall["exact %"] == round(recorded["test_bin_accuracy"] * 100, 1)
    at.selectbox(key="rv_slice").set_value("gender").run()
    genders = at.dataframe[0].value
    assert sorted(genders["group"]) == ["Female", "Male"]
    assert genders["images"].sum() == len(truth)


def test_filters_show_exactly_the_matching_faces(tiny_run: Path, truth: pd.DataFrame) -> None:
    at = open_page()
    off = truth[truth["d"] != 0]
    d = int(off["d"].value_counts().index[0])  # the most common mistake
    at.selectbox(key="rv_dist_mode").set_value("exactly")
    at.number_input(key="rv_dist_k").set_value(abs(d))
    at.radio(key="rv_direction").set_value("over" if d > 0 else "under")
    at.run()
    assert not at.exception
    want = truth[truth["d"] == d]
    assert matching(at) == len(want)
    assert sorted(gallery_captions(at)) == expected_captions(want.drop(columns="d"), "groups10")

    at.selectbox(key="rv_dist_mode").set_value("at least").run()
    assert matching(at) == int(((truth["d"].abs() >= abs(d)) & (np.sign(truth["d"]) == np.sign(d))).sum())

    at.button(key="rv_clear").click().run()
    assert matching(at) == len(truth)
    labels = with_derived_columns(truth.drop(columns="d"), "groups10")["true_label"]
    common = labels.value_counts().index[0]
    at.multiselect(key="rv_true").select(common).run()
    at.multiselect(key="rv_gender").select("Female").run()
    assert matching(at) == int(((labels == common) & (truth["gender"] == 1)).sum())
    at.multiselect(key="rv_eth").select("White").run()
    assert matching(at) == int(((labels == common) & (truth["gender"] == 1) & (truth["race"] == 0)).sum())


def test_clicking_a_bar_or_a_cell_filters_the_gallery(tiny_run: Path, truth: pd.DataFrame) -> None:
    """What the browser sends when a bar / a confusion cell is selected, replayed through AppTest."""
    at = open_page()
    d = int(truth.loc[truth["d"] != 0, "d"].value_counts().index[0])
    at.session_state["rv_distance_chart"] = {
        "selection": {"points": [{"x": d, "y": 5, "curve_number": 0 if d < 0 else 2}], "point_indices": [0]}
    }
    at.run()
    assert not at.exception
    assert at.selectbox(key="rv_dist_mode").value == "exactly"
    assert at.number_input(key="rv_dist_k").value == abs(d)
    assert matching(at) == int((truth["d"] == d).sum())

    t, p = truth.loc[truth["d"] != 0, ["true_bin", "pred_bin"]].value_counts().index[0]
    at.session_state["rv_confusion_chart"] = {
        "selection": {"points": [{"x": int(p), "y": int(t), "curve_number": 1}], "point_indices": [0]}
    }
    at.run()
    cell = truth[(truth["true_bin"] == t) & (truth["pred_bin"] == p)]
    assert at.selectbox(key="rv_dist_mode").value == "any"  # the cell replaces the bar's filter
    assert matching(at) == len(cell)
    assert sorted(gallery_captions(at)) == expected_captions(cell.drop(columns="d"), "groups10")


def test_tiles_say_truth_prediction_and_file(tiny_run: Path, truth: pd.DataFrame) -> None:
    row = with_derived_columns(truth.drop(columns="d"), "groups10").iloc[0]
    age, gender, race = (int(x) for x in Path(row["path"]).name.split("_")[:3])
    truth_line, prediction, guess, file = tile_lines(row)
    labels = get_scheme("groups10").labels
    assert truth_line == (
        f"true: {labels[int(row['true_bin'])]} · {age} y · {['Male', 'Female'][gender]} · "
        f"{['White', 'Black', 'Asian', 'Indian', 'Others'][race]}"
    )
    d = int(row["pred_bin"]) - int(row["true_bin"])
    assert prediction.startswith(f"predicted: {labels[int(row['pred_bin'])]} ")
    assert ("exact bin" if d == 0 else f"{d:+d} bin") in prediction
    assert guess.endswith(", right" if int(row["pred_gender"]) == gender else ", wrong")
    assert file == Path(row["path"]).name
    # Markdown line breaks, so the lines stay lines on the page.
    assert tile_markdown(row).count("  \n") == 3


def test_sorting_and_paging(tiny_run: Path, truth: pd.DataFrame) -> None:
    at = open_page()
    assert at.selectbox(key="rv_sort").value == "most wrong"
    tiles = gallery_captions(at)
    assert len(tiles) == min(24, len(truth))
    assert [tile_file(c) for c in tiles] == most_wrong_first(truth)[:24]
    at.selectbox(key="rv_sort").set_value("age error").run()
    worst = truth.loc[(truth["pred_age"] - truth["age"]).abs().idxmax()]
    assert tile_file(gallery_captions(at)[0]) == Path(worst["path"]).name
    pages = page_count(len(truth), 24)
    assert at.pagination[0].proto.num_pages == pages
    at.pagination[0].set_value(pages).run()
    assert len(gallery_captions(at)) == len(truth) - 24 * (pages - 1)
    assert not at.exception


def test_clear_resets_every_filter_for_good(tiny_run: Path, truth: pd.DataFrame) -> None:
    at = open_page()
    at.multiselect(key="rv_gender").select("Female").run()
    at.multiselect(key="rv_eth").select("White").run()
    assert matching(at) == int(((truth["gender"] == 1) & (truth["race"] == 0)).sum())
    at.button(key="rv_clear").click().run()
    assert at.multiselect(key="rv_gender").value == [] and at.multiselect(key="rv_eth").value == []
    at.radio(key="rv_direction").set_value("over").run()  # the next change must not bring them back
    assert matching(at) == int((truth["d"] > 0).sum())


def test_marking_a_face_writes_the_marks_file(tiny_run: Path, truth: pd.DataFrame) -> None:
    at = open_page()
    first = tile_file(gallery_captions(at)[0])
    at.checkbox(key=f"rv_mark_{first}").check().run()
    assert not at.exception
    folder = Path(truth["path"].iloc[0]).parent
    assert marks.marked_files(folder) == {first}
    assert any("1** face marked" in m.value for m in at.markdown)
    shown = next(d.value for d in at.dataframe if "marked at" in d.value.columns)
    assert shown["gender"].iloc[0] in ("Male", "Female") and shown["ethnicity"].iloc[0] in RACES.values()
    assert at.download_button(key="rv_marks_export").label == "Export the marks (CSV)"
    at.checkbox(key=f"rv_mark_{first}").uncheck().run()
    assert marks.marked_files(folder) == set()


def test_rebinning_and_comparing_with_an_evaluation(
    tiny_run: Path, truth: pd.DataFrame, utkface_dir: Path
) -> None:
    """The run's model evaluated on a fresh folder shows up as a second source to compare with."""
    from tests.real_data import copy_real_images

    folder = evaluations_dir().parent / "fresh"
    copy_real_images(utkface_dir, folder, 30, step=701)
    assert evaluate_cli(["--model", str(tiny_run), "--data", str(folder)]) == 0
    at = open_page()
    evaluation = next(o for o in at.selectbox(key="rv_other").options if o.startswith("evaluation:"))
    at.selectbox(key="rv_other").set_value(evaluation).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table.columns)[:2] == [tiny_run.name, evaluation] and "difference" in table.columns
    assert table.loc["images", evaluation] == "30"
    assert len(at.get("plotly_chart")) == 3  # the two runs' distance distributions, side by side

    at.selectbox(key="rv_other").set_value("(none)")
    at.selectbox(key="rv_bins").set_value("decades").run()
    assert not at.exception
    decades = headline(with_derived_columns(truth.drop(columns="d"), "groups10", "decades"))
    assert {m.label: m.value for m in at.metric}["Exact bin"] == f"{decades['exact']:.1%}"
    assert any("Rebinned" in c.value for c in at.caption)


def test_confident_mistakes_and_export(tiny_run: Path, truth: pd.DataFrame) -> None:
    at = open_page()
    note = next(c.value for c in at.caption if "most confident wrong predictions" in c.value)
    assert note.startswith(f"The {min(12, int((truth['d'] != 0).sum()))} most confident")
    assert at.download_button(key="rv_export").label.startswith("Export the filtered rows")


def test_far_misses_sit_on_their_own_scale_and_a_click_on_one_filters(
    tiny_run: Path, truth: pd.DataFrame
) -> None:
    from agelab.evaluation.metrics import distance_distribution
    from agelab.evaluation.review_charts import FAR, distance_figure

    prepared = with_derived_columns(truth.drop(columns="d"), "groups10")
    dist = distance_distribution(prepared)
    far = dist[dist["distance"].abs() >= FAR]
    assert not far.empty, "the tiny run has no far miss to click"
    figure = distance_figure(dist)
    near_axis = next(t.yaxis for t in figure.data if 0 in list(t.x))
    for trace in figure.data:
        if all(abs(x) >= FAR for x in trace.x):  # a far bar: its panel's y range is the far misses' own
            assert trace.yaxis != near_axis
            axis = figure.layout[f"yaxis{trace.yaxis[1:]}"]
            assert max(trace.y) >= axis.range[1] / 1.25 / far["count"].max() * min(trace.y)
            assert axis.range[1] == far["count"].max() * 1.25
    # The far bar with the fewest images, clicked as the browser sends it.
    d = int(far.sort_values("count").iloc[0]["distance"])
    at = open_page()
    at.session_state["rv_distance_chart"] = {
        "selection": {"points": [{"x": d, "y": 1, "curve_number": 0}], "point_indices": [0]}
    }
    at.run()
    assert not at.exception
    assert matching(at) == int((truth["d"] == d).sum())
    assert not any(t.label == "Log scale" for t in at.toggle)


def test_the_face_dialog_steps_through_the_selection_shows_the_crop_and_marks(
    tiny_run: Path, truth: pd.DataFrame
) -> None:
    at = open_page()
    first, second = (tile_file(c) for c in gallery_captions(at)[:2])
    at.button(key=f"rv_open_{first}").click().run()
    assert not at.exception, at.exception
    assert any(m.value.startswith("Face **1** of") for m in at.markdown)
    assert any(f"`{first}`" in m.value for m in at.markdown)
    at.button(key="rv_dialog_forward").click().run()
    assert not at.exception, at.exception
    assert any(m.value.startswith("Face **2** of") for m in at.markdown)
    assert any(f"`{second}`" in m.value for m in at.markdown)
    at.radio(key=f"rv_dialog_{second}_reason").set_value("gender wrong").run()
    at.button(key=f"rv_dialog_{second}_mark").click().run()
    assert not at.exception, at.exception
    folder = Path(truth["path"].iloc[0]).parent
    table = marks.load_marks(folder)
    assert table.set_index("file").loc[second, "reason"] == "gender wrong"
    assert any(c.value == ":material/flag: Marked: gender wrong" for c in at.caption)
    marks.set_mark(folder, second, marked=False)


def test_confident_mistakes_can_be_marked_with_a_reason(tiny_run: Path, truth: pd.DataFrame) -> None:
    at = open_page()
    key = next(b.key for b in at.button if b.key and b.key.startswith("rv_cm_") and b.key.endswith("_mark"))
    file = key.removeprefix("rv_cm_").removesuffix("_mark")
    at.radio(key=f"rv_cm_{file}_reason").set_value("duplicate").run()
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    folder = Path(truth["path"].iloc[0]).parent
    assert marks.load_marks(folder).set_index("file").loc[file, "reason"] == "duplicate"
    marks.set_mark(folder, file, marked=False)


def test_the_crop_the_model_saw_is_the_cached_crop_or_made_again_as_training_made_it(
    utkface_dir: Path, isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.real_data import find_detector_models, require

    # The tiny run's module empties the models folder; the face detector is needed here.
    monkeypatch.setenv("AGELAB_MODELS_DIR", str(require(find_detector_models(), "face detector models")))
    from agelab.crop import model_input
    from agelab.crop_cache import aligned_inputs
    from agelab.evaluation.gallery import model_view
    from agelab.images import load_image
    from tests.real_data import copy_real_images

    folder = isolated_dirs / "faces"
    path = copy_real_images(utkface_dir, folder, 1, step=997)[0]
    assert (model_view(path, False, 64) == model_input(load_image(path), 64)).all()  # the whole image
    made = model_view(path, True, 96)  # no cache yet: the detector's aligned crop, made here
    cached = aligned_inputs(pd.DataFrame({"path": [str(path)]}), 96, log=lambda _: None)["input"][0]
    assert made.shape == (96, 96, 3) and (made == load_image(cached)).all()  # what training cached
    Path(cached).write_bytes(Path(cached).read_bytes()[:40])  # a damaged cache file is made again
    assert (model_view(path, True, 96) == made).all()
