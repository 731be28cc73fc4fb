"""Confident mistakes: the wrong predictions a model was surest of, often label noise, with the
byte-identical copies whose labels disagree."""

from __future__ import annotations

import pandas as pd

from agelab.evaluation.gallery import sort_predictions


def confident_mistakes(
    frame: pd.DataFrame,
    index_frame: pd.DataFrame | None = None,
    limit: int = 12,
    only_conflicts: bool = False,
) -> pd.DataFrame:
    """The most confident wrong bin predictions, often label noise.

    With ``index_frame`` (``agelab.data.load_index(folder).frame``), each mistake gets its
    ``dup_group`` and a ``conflicting_duplicates`` list: the byte-identical copies under other
    names whose labels disagree, as dicts with path, file, age, gender, race. ``only_conflicts``
    keeps only the mistakes that have such copies.
    """
    wrong = frame[frame["distance"] != 0]
    if only_conflicts:
        conflicted = (
            set() if index_frame is None else set(index_frame.loc[index_frame["dup_conflict"], "path"])
        )
        wrong = wrong[wrong["path"].isin(conflicted)]
    wrong = sort_predictions(wrong, "confidence").head(limit).copy()
    wrong["dup_group"] = -1
    wrong["conflicting_duplicates"] = [[] for _ in range(len(wrong))]
    if index_frame is None or wrong.empty:
        return wrong
    by_path = index_frame.set_index("path")
    conflicts = index_frame[index_frame["dup_conflict"] & (index_frame["dup_group"] >= 0)]
    groups = {g: members for g, members in conflicts.groupby("dup_group")}
    dup_groups, duplicates = [], []
    for path in wrong["path"]:
        group = int(by_path.at[path, "dup_group"]) if path in by_path.index else -1
        dup_groups.append(group)
        members = groups.get(group)
        if members is None:
            duplicates.append([])
            continue
        others = members[members["path"] != path]
        duplicates.append(others[["path", "file", "age", "gender", "race"]].to_dict("records"))
    wrong["dup_group"] = dup_groups
    wrong["conflicting_duplicates"] = duplicates
    return wrong
