"""Evaluation metrics, intervals and gallery queries, checked against hand-computed values."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agelab.bins import get_scheme
from agelab.data import load_index, parse_name
from agelab.evaluation.export import export_csv
from agelab.evaluation.gallery import (
    GalleryQuery,
    filter_predictions,
    image_folder,
    page_count,
    page_of,
    query_from_selection,
    sort_predictions,
)
from agelab.evaluation.intervals import bootstrap_mean_interval, wilson_interval
from agelab.evaluation.metrics import (
    RUN_METRICS,
    SLICE_DIMENSIONS,
    abs_distance_distribution,
    confusion,
    distance_distribution,
    headline,
    per_bin_report,
    run_metrics,
    slice_metrics,
)
from agelab.evaluation.mistakes import confident_mistakes
from agelab.evaluation.predictions import predictions_frame, with_derived_columns

SCHEME = get_scheme("0,10,20,30")  # bins 0-9, 10-19, 20-29, 30+


def hand_table() -> pd.DataFrame:
    """Six predictions whose metrics are worked out by hand in the tests below.

    age -> true bin, pred_age -> pred bin, signed distance:
      5 -> 0,  7 -> 0,  0      15 -> 1, 25 -> 2, +1      25 -> 2,  5 -> 0, -2
     35 -> 3, 33 -> 3,  0      12 -> 1, 11 -> 1,  0      31 -> 3,  8 -> 0, -3
    """
    age = [5, 15, 25, 35, 12, 31]
    pred_age = [7.0, 25.0, 5.0, 33.0, 11.0, 8.0]
    probs = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.1, 0.2, 0.6, 0.1],
            [0.9, 0.05, 0.03, 0.02],
            [0.1, 0.1, 0.2, 0.6],
            [0.2, 0.5, 0.2, 0.1],
            [0.4, 0.3, 0.2, 0.1],
        ]
    )
    prob_female = [0.1, 0.8, 0.6, 0.3, 0.9, 0.2]
    frame = pd.DataFrame(
        {
            "path": [f"/faces/{a}_{i}.jpg" for i, a in enumerate(age)],
            "age": age,
            "gender": [0, 1, 0, 1, 1, 0],
            "race": [0, 1, 0, 2, 1, 0],
            "true_bin": SCHEME.bin_of(age),
            "pred_bin": probs.argmax(axis=1),
        }
    )
    for k in range(4):
        frame[f"bin_prob_{k}"] = probs[:, k]
    frame["pred_age"] = pred_age
    frame["pred_gender"] = (np.array(prob_female) >= 0.5).astype(int)
    frame["prob_female"] = prob_female
    return frame


@pytest.fixture
def table() -> pd.DataFrame:
    return with_derived_columns(hand_table(), SCHEME)


def test_derived_columns_distance_direction_and_confidence(table: pd.DataFrame) -> None:
    assert table["distance"].tolist() == [0, 1, -2, 0, 0, -3]
    assert table["direction"].tolist() == ["exact", "over", "under", "exact", "exact", "under"]
    assert table["confidence"].tolist() == pytest.approx([0.7, 0.6, 0.9, 0.6, 0.5, 0.4])
    assert table["abs_age_error"].tolist() == pytest.approx([2, 10, 20, 2, 1, 23])
    assert table["true_label"].tolist()[:2] == ["0-9", "10-19"]
    assert table["ethnicity"].tolist()[:4] == ["White", "Black", "White", "Asian"]


def test_headline_matches_hand_computed_values(table: pd.DataFrame) -> None:
    h = headline(table)
    assert h["n"] == 6
    assert h["exact"] == pytest.approx(3 / 6)
    assert h["within1"] == pytest.approx(4 / 6)
    assert h["within2"] == pytest.approx(5 / 6)
    assert h["mae"] == pytest.approx(58 / 6)
    # predicted gender [0,1,1,0,1,0] against [0,1,0,1,1,0]: 4 of 6 right
    assert h["gender_acc"] == pytest.approx(4 / 6)
    # female scores .8 .3 .9 beat male scores .1 .6 .2 in 8 of the 9 pairs
    assert h["gender_auc"] == pytest.approx(8 / 9)
    assert h["over"] == pytest.approx(1 / 6) and h["under"] == pytest.approx(2 / 6)


def test_run_metrics_keep_the_names_run_folders_store() -> None:
    # agelab.runs, agelab.sweeps and the Predict page read these keys from a run's metrics.json.
    assert run_metrics(hand_table(), SCHEME) == {
        "test_bin_accuracy": 0.5,
        "test_within_one_bin": 0.6667,
        "test_age_mae": 9.667,
        "test_gender_accuracy": 0.6667,
        "n_test": 6,
    }
    assert [key for key, _ in RUN_METRICS.values()] == list(run_metrics(hand_table(), SCHEME))


def test_predictions_frame_builds_the_contract_from_records_or_a_frame() -> None:
    hand = hand_table()
    outputs = {
        "age_bin": hand[[f"bin_prob_{k}" for k in range(4)]].to_numpy(),
        "age": hand["pred_age"].to_numpy(),
        "prob_female": hand["prob_female"].to_numpy(),
    }
    labels = hand[["path", "age", "gender", "race"]]
    from_records = predictions_frame(labels.to_dict("records"), outputs, SCHEME)
    pd.testing.assert_frame_equal(from_records, hand)
    # A frame with a shuffled index: rows still pair with the outputs by position.
    pd.testing.assert_frame_equal(
        predictions_frame(labels.set_index(labels.index[::-1]), outputs, SCHEME), hand
    )
    found = predictions_frame(labels.assign(face_found=[True, False] * 3), outputs, SCHEME.spec)
    assert found["face_found"].tolist() == [True, False] * 3
    rebinned = predictions_frame(labels.to_dict("records"), outputs, SCHEME, "decades")
    assert rebinned["pred_bin"].tolist() == [0, 2, 0, 3, 1, 0]
    assert not [c for c in rebinned.columns if c.startswith("bin_prob_")]


def test_gender_auc_is_none_when_one_gender(table: pd.DataFrame) -> None:
    assert headline(table[table["gender"] == 0])["gender_auc"] is None


def test_distance_distributions(table: pd.DataFrame) -> None:
    signed = distance_distribution(table)
    assert dict(zip(signed["distance"], signed["count"])) == {-3: 1, -2: 1, 0: 3, 1: 1}
    assert signed.set_index("distance").loc[-2, "direction"] == "under"
    absolute = abs_distance_distribution(table)
    assert dict(zip(absolute["abs_distance"], absolute["count"])) == {0: 3, 1: 1, 2: 1, 3: 1}
    assert absolute["cumulative"].tolist() == pytest.approx([3 / 6, 4 / 6, 5 / 6, 1.0])


def test_confusion_matrix_and_per_bin_precision_recall(table: pd.DataFrame) -> None:
    expected = [[1, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 1]]
    assert confusion(table, 4).tolist() == expected
    assert confusion(table, 4, normalize=True)[1].tolist() == pytest.approx([0, 0.5, 0.5, 0])
    report = per_bin_report(table, SCHEME)
    assert report["precision"].tolist() == pytest.approx([1 / 3, 1, 0, 1])
    assert report["recall"].tolist() == pytest.approx([1, 0.5, 0, 0.5])
    assert report["support"].tolist() == [1, 2, 1, 2]
    assert report["predicted"].tolist() == [3, 1, 1, 1]


def test_wilson_interval_known_values() -> None:
    # 8 successes of 10: the textbook Wilson 95 % interval is 0.490-0.943.
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_bootstrap_interval_is_seeded_and_brackets_the_mean() -> None:
    errors = np.random.default_rng(1).gamma(2.0, 4.0, size=400)
    lo, hi = bootstrap_mean_interval(errors, seed=3)
    assert (lo, hi) == bootstrap_mean_interval(errors, seed=3)
    assert lo < errors.mean() < hi
    # The normal approximation of the mean's 95 % interval has about the same width.
    half = 1.96 * errors.std(ddof=1) / math.sqrt(len(errors))
    assert hi - lo == pytest.approx(2 * half, rel=0.15)
    assert bootstrap_mean_interval([5.0, 5.0, 5.0]) == (5.0, 5.0)


def test_slice_metrics_counts_and_intervals(table: pd.DataFrame) -> None:
    slices = slice_metrics(table, n_boot=200)
    assert set(slices["slice"]) == set(SLICE_DIMENSIONS)
    overall = slices[slices["slice"] == "all"].iloc[0]
    assert overall["n"] == 6 and overall["exact"] == pytest.approx(0.5)
    gender = slices[slices["slice"] == "gender"].set_index("group")
    assert gender.loc["Male", "n"] == 3 and gender.loc["Female", "n"] == 3
    # Male rows: exact 1 of 3; Female rows: exact 2 of 3.
    assert gender.loc["Male", "exact"] == pytest.approx(1 / 3)
    assert (gender.loc["Male", "exact_lo"], gender.loc["Male", "exact_hi"]) == pytest.approx(
        wilson_interval(1, 3)
    )
    assert gender.loc["Female", "mae"] == pytest.approx((10 + 2 + 1) / 3)
    assert gender.loc["Female", "mae_lo"] <= gender.loc["Female", "mae"] <= gender.loc["Female", "mae_hi"]
    bins = slices[slices["slice"] == "age bin"]
    assert bins["group"].tolist() == ["0-9", "10-19", "20-29", "30+"]  # ordinal order, not alphabetical
    crossed = slices[slices["slice"] == "gender x ethnicity"].set_index("group")
    assert crossed.loc["Male / White", "n"] == 3 and crossed.loc["Female / Black", "n"] == 2
    assert slices["n"].groupby(slices["slice"]).sum().eq(6).all()


def test_gallery_filters(table: pd.DataFrame) -> None:
    def rows(**kw: object) -> list[int]:
        return sorted(filter_predictions(table, GalleryQuery(**kw)).index.tolist())

    assert rows(distance=2) == [2]
    assert rows(distance=2, at_least=True) == [2, 5]
    assert rows(distance=1, at_least=True, direction="under") == [2, 5]
    assert rows(direction="over") == [1]
    assert rows(distance=0) == [0, 3, 4]
    assert rows(true_bins=(3,)) == [3, 5]
    assert rows(pred_bins=(0,), genders=(0,)) == [0, 2, 5]
    assert rows(races=(1,)) == [1, 4]
    assert rows(true_bins=(1,), pred_bins=(2,)) == [1]
    with pytest.raises(ValueError, match="direction 'sideways'"):
        GalleryQuery(direction="sideways")


def test_gallery_sorting_and_paging(table: pd.DataFrame) -> None:
    by_conf = sort_predictions(table, "confidence")
    assert by_conf["confidence"].tolist() == pytest.approx([0.9, 0.7, 0.6, 0.6, 0.5, 0.4])
    by_err = sort_predictions(table, "age error")
    assert by_err["abs_age_error"].tolist()[:2] == pytest.approx([23, 20])
    shuffled = sort_predictions(table, "random", seed=5)
    assert shuffled.index.tolist() == sort_predictions(table, "random", seed=5).index.tolist()
    assert sorted(shuffled.index) == list(range(6))
    assert page_count(6, 4) == 2 and page_count(0, 4) == 1
    assert page_of(by_conf, 2, 4).index.tolist() == by_conf.index.tolist()[4:]
    assert page_of(by_conf, 9, 4).index.tolist() == by_conf.index.tolist()[4:]


def test_chart_selection_becomes_filters() -> None:
    bar = query_from_selection([{"x": -2, "y": 40}], "distance")
    assert bar == {"distance": 2, "at_least": False, "direction": "under"}
    assert query_from_selection([{"x": 0}], "distance")["distance"] == 0
    cell = query_from_selection([{"x": 2, "y": 1, "curve_number": 1}], "confusion")
    assert cell == {"true_bins": (1,), "pred_bins": (2,)}
    assert query_from_selection([], "distance") == {}


def test_rebinning_uses_predicted_age(table: pd.DataFrame) -> None:
    decades = with_derived_columns(hand_table(), SCHEME, "decades")
    assert decades["true_bin"].tolist() == [0, 1, 2, 3, 1, 3]
    assert decades["pred_bin"].tolist() == [0, 2, 0, 3, 1, 0]
    assert decades["confidence"].isna().all()
    assert not [c for c in decades.columns if c.startswith("bin_prob_")]
    # Without probabilities, "most confident" falls back to the largest age error.
    assert sort_predictions(decades, "confidence")["abs_age_error"].iloc[0] == 23


def test_missing_contract_columns_are_named() -> None:
    with pytest.raises(ValueError, match="pred_age, pred_gender"):
        with_derived_columns(hand_table().drop(columns=["pred_age", "pred_gender"]), SCHEME)


def test_export_csv_round_trips(table: pd.DataFrame) -> None:
    subset = filter_predictions(table, GalleryQuery(distance=1, at_least=True))
    back = pd.read_csv(pd.io.common.BytesIO(export_csv(subset)))
    assert back["path"].tolist() == subset["path"].tolist()
    assert {"true_label", "pred_label", "confidence", "distance", "ethnicity"} <= set(back.columns)


def test_confident_mistakes_join_conflicting_duplicates(
    utkface_dir: Path, duplicates_csv: Path, tmp_path: Path, isolated_dirs: Path
) -> None:
    """On real files: a mistake whose bytes also sit under another name with other labels."""
    dups = pd.read_csv(duplicates_csv)
    dups = dups[dups["file"].str.fullmatch(r"\d+_[01]_[0-4]_\d{17}\.jpg\.chip\.jpg")].copy()
    dups["labels"] = dups["file"].map(lambda n: (parse_name(n).age, parse_name(n).gender, parse_name(n).race))
    conflicting = dups.groupby("group").filter(lambda g: g["labels"].nunique() > 1 and len(g) == 2)
    pair = conflicting[conflicting["group"] == conflicting["group"].iloc[0]]["file"].tolist()
    folder = tmp_path / "faces"
    folder.mkdir()
    others = sorted(p.name for p in utkface_dir.glob("2*_0_0_*.jpg.chip.jpg"))[:4]
    for name in pair + others:
        shutil.copy2(utkface_dir / name, folder / name)
    index = load_index(folder).frame
    rows = index[index["file"].isin([pair[0], *others])].reset_index(drop=True)
    scheme = get_scheme("groups10")
    probs = np.full((len(rows), scheme.num_bins), 0.02)
    true_bins = scheme.bin_of(rows["age"].to_numpy())
    wrong_bins = (true_bins + 3) % scheme.num_bins
    probs[np.arange(len(rows)), wrong_bins] = 1 - 0.02 * (scheme.num_bins - 1)
    predictions = pd.DataFrame(
        {
            "path": rows["path"],
            "age": rows["age"],
            "gender": rows["gender"],
            "race": rows["race"],
            "true_bin": true_bins,
            "pred_bin": wrong_bins,
        }
    )
    for k in range(scheme.num_bins):
        predictions[f"bin_prob_{k}"] = probs[:, k]
    predictions["pred_age"] = scheme.bin_centers()[wrong_bins]
    predictions["pred_gender"] = rows["gender"]
    predictions["prob_female"] = rows["gender"].astype(float)
    prepared = with_derived_columns(predictions, scheme)
    assert image_folder(prepared) == folder.resolve()
    mistakes = confident_mistakes(prepared, index, limit=10)
    assert len(mistakes) == len(rows)
    flagged = mistakes[mistakes["conflicting_duplicates"].str.len() > 0]
    assert flagged["path"].map(lambda p: Path(p).name).tolist() == [pair[0]]
    twin = flagged["conflicting_duplicates"].iloc[0]
    assert [d["file"] for d in twin] == [pair[1]]
    assert (twin[0]["age"], twin[0]["gender"], twin[0]["race"]) == (
        parse_name(pair[1]).age,
        parse_name(pair[1]).gender,
        parse_name(pair[1]).race,
    )
    assert (mistakes.loc[mistakes["conflicting_duplicates"].str.len() == 0, "dup_group"] == -1).all()
    only = confident_mistakes(prepared, index, limit=10, only_conflicts=True)
    assert only["path"].map(lambda p: Path(p).name).tolist() == [pair[0]]
    assert confident_mistakes(prepared, None, only_conflicts=True).empty


def test_sources_name_an_old_runs_scheme_by_its_current_name(isolated_dirs: Path) -> None:
    from agelab import atomic, runs
    from agelab.bins import BUILTIN_SCHEMES
    from agelab.evaluation.sources import evaluations_dir, list_sources

    # A run and an evaluation saved before groups10 was renamed from seed10; and a scheme of edges.
    old = runs.create_run({"name": "old", "bins": "seed10"})
    atomic.write_parquet(old / "predictions.parquet", hand_table())
    edges = runs.create_run({"name": "edges", "bins": " 0,10,20,30"})
    atomic.write_parquet(edges / "predictions.parquet", hand_table())
    atomic.write_parquet(evaluations_dir() / "m-on-x.parquet", hand_table())
    atomic.write_json(evaluations_dir() / "m-on-x.json", {"bins": "seed10"})
    bins = {source.name: source.bins for source in list_sources()}
    assert bins == {"old-1": "groups10", "edges-1": "0,10,20,30", "evaluation: m-on-x": "groups10"}
    # The Review page's scheme picker: the model's scheme, then the built-in ones, each once.
    assert list(dict.fromkeys([bins["old-1"], *BUILTIN_SCHEMES])) == list(BUILTIN_SCHEMES)
