"""Dataset: the training sources (UTKFace folders and labelled folders), their flaws, their mix and their
imbalance."""

import plotly.express as px
import streamlit as st

from agelab import eda, palette, tables
from agelab.bins import BUILTIN_SCHEMES, get_scheme
from agelab.config import OPTIONS
from agelab.data import GENDERS, RACES
from agelab.data_sources import change_times, overview
from agelab.images import ImageError, load_image
from agelab.paths import data_dir
from agelab.rebalance import STRATEGIES, default_target
from streamlit_setup import through_app

through_app()

LABELS = palette.TITLES


@st.cache_data(show_spinner="Indexing images...")
def load(folders: str, dedupe_policy: str, signature: tuple[float, ...]):
    return overview(folders, dedupe_policy)


def show_images(paths: list[str], captions: list[str], width: int) -> None:
    """Thumbnails of the images that decode; each one that does not is named in a warning instead,
    since Streamlit's own decoding raised a raw codec error that took the page down."""
    from PIL import Image

    shown, labels, failed = [], [], []
    for path, caption in zip(paths, captions):
        try:
            thumbnail = Image.fromarray(load_image(path))
        except ImageError as err:
            failed.append(str(err))
            continue
        thumbnail.thumbnail((2 * width, 2 * width))  # sharp on a high-density screen, small to send
        shown.append(thumbnail)
        labels.append(caption)
    if shown:
        st.image(shown, caption=labels, width=width)
    if failed:
        st.warning(
            f"{len(failed)} image(s) cannot be shown; replace or remove them: " + "; ".join(failed),
            icon=":material/broken_image:",
        )


st.title("Dataset")


def keep_folder() -> None:
    # A widget's value is forgotten when its page is left; a plain session key is kept.
    st.session_state["data_folder"] = st.session_state["dataset_folder_input"]


with st.sidebar:
    folder = st.text_input(
        "Dataset folder",
        value=st.session_state.get("data_folder", str(data_dir())),
        key="dataset_folder_input",
        on_change=keep_folder,
        help="One folder, or several comma-separated: UTKFace-named images, or images beside a labels.csv "
        "(file,age_low,age_high,gender[,ethnicity]). AGELAB_DATA sets the default; kept while you switch pages",
    )
    scheme_name = st.selectbox("Age bins", [*BUILTIN_SCHEMES, "custom"])
    edges = st.text_input("Custom edges", "0,3,13,20,40,60", disabled=scheme_name != "custom")
    drop_dups = st.toggle(
        "Drop duplicates", value=True, help="Drop conflicting copies, keep one of agreeing ones"
    )

try:
    scheme = get_scheme(edges if scheme_name == "custom" else scheme_name)
    # The folders' change times key the cache; a missing folder gets the loader's message.
    loaded = load(folder, "drop_conflicts" if drop_dups else "none", change_times(folder))
except (ValueError, OSError) as err:
    st.error(str(err))
    st.stop()
frame, malformed, duplicates, summary = loaded.frame, loaded.malformed, loaded.duplicates, loaded.summary
if frame.empty:
    st.warning(
        f"No usable labelled image in `{folder}` ({summary['total']:,} image files, "
        f"{summary['malformed']:,} left out): point the dataset folder at UTKFace images, or at a folder "
        "with a labels.csv.",
        icon=":material/warning:",
    )
    if not malformed.empty:
        st.dataframe(malformed[["source", "file", "reason"]], hide_index=True, width="stretch")
    st.stop()

data = eda.labelled(frame, scheme)

cols = st.columns(6)
for col, (label, key) in zip(
    cols,
    [
        ("Files", "total"),
        ("Valid labels", "valid"),
        ("Malformed", "malformed"),
        ("Duplicate groups", "duplicate_groups"),
        ("Conflicting groups", "conflicting_groups"),
        ("Kept", "kept"),
    ],
):
    col.metric(label, f"{summary[key]:,}")
st.caption(f"Showing {len(data):,} images from {summary['sources']} source(s) with the `{scheme.spec}` bins.")
if summary["sources"] > 1:
    st.header("Sources and their mix")
    st.dataframe(
        loaded.sources.rename(columns=lambda c: c.replace("_", " ")), hide_index=True, width="stretch"
    )
    mix = eda.source_mix(data)
    st.plotly_chart(
        px.bar(
            mix,
            x="bin_label",
            y="images",
            color="source",
            barmode="stack",
            hover_data={"share": ":.1%", "images": ":,"},
            labels=LABELS,
            title="Each age bin by source (hover: the source's share of the bin)",
        ),
        width="stretch",
    )

with st.expander(
    f"Data quality: {len(malformed)} files left out, {summary['duplicate_groups']} duplicate groups"
):
    st.subheader("Left out: malformed names, bad labels.csv rows, unreadable or missing files")
    st.dataframe(malformed[["source", "file", "reason"]], hide_index=True, width="stretch")
    # Only files that exist and can be read are shown as pictures.
    viewable = malformed[
        ~malformed["reason"].str.startswith("cannot be read")
        & ~malformed["reason"].str.contains("not found in", regex=False)
    ]
    show_images(viewable["path"].tolist(), viewable["file"].tolist(), width=100)
    st.subheader("Byte-identical images under different names")
    only_conflicts = st.checkbox("Only groups with conflicting labels", value=True)
    shown = (
        duplicates[duplicates["dup_conflict"].fillna(False).astype(bool)] if only_conflicts else duplicates
    )
    group_ids = shown["dup_group"].drop_duplicates().tolist()
    st.dataframe(tables.duplicates_table(shown), hide_index=True, width="stretch", height=240)
    if group_ids:
        start = st.number_input("First group shown", 0, max(len(group_ids) - 1, 0), 0, step=6)
        for group in group_ids[start : start + 6]:
            members = shown[shown["dup_group"] == group]
            show_images(members["path"].tolist(), members["file"].tolist(), width=110)

st.header("Age")
left, right = st.columns(2)
ages = data.groupby(["age", "gender_name"]).size().reset_index(name="images")
left.plotly_chart(
    px.bar(
        ages,
        x="age",
        y="images",
        color="gender_name",
        color_discrete_map=palette.GENDER,
        category_orders={"gender_name": list(palette.GENDER_ORDER)},
        labels=LABELS,
        title="Age (1-year bins)",
    ),
    width="stretch",
)
bin_counts = data["bin_label"].value_counts(sort=False).rename_axis("bin_label").reset_index(name="images")
right.plotly_chart(
    px.bar(
        bin_counts,
        x="bin_label",
        y="images",
        color="bin_label",
        color_discrete_map=palette.bin_colors(scheme.labels),
        labels=LABELS,
        title=f"Age bins: imbalance {eda.imbalance_ratio(bin_counts['images']):.1f}x",
        hover_data={"images": ":,"},
    ).update_layout(showlegend=False),
    width="stretch",
)

left, right = st.columns(2)
for col, column, title, colors in (
    (left, "gender_name", "Gender", palette.GENDER),
    (right, "race_name", "Ethnicity", palette.ETHNICITY),
):
    counts = data[column].value_counts(sort=False).rename_axis(column).reset_index(name="images")
    col.plotly_chart(
        px.bar(
            counts,
            x=column,
            y="images",
            color=column,
            color_discrete_map=colors,
            category_orders={column: list(colors)},
            labels=LABELS,
            title=f"{title}: imbalance {eda.imbalance_ratio(counts['images']):.2f}x",
            hover_data={"images": ":,"},
        ).update_layout(showlegend=False),
        width="stretch",
    )

st.header("Age bin crossings")
view = st.radio("Show as", ["Stacked bars", "Heatmap"], horizontal=True)
left, right = st.columns(2)
for col, column, title, colors in (
    (left, "race_name", "ethnicity", palette.ETHNICITY),
    (right, "gender_name", "gender", palette.GENDER),
):
    table = eda.crosstab(data, column)
    if column == "gender_name":  # a crosstab sorts names alphabetically; every chart uses one order
        table = table.reindex(columns=[g for g in palette.GENDER_ORDER if g in table.columns])
    ratio = eda.imbalance_ratio(table.to_numpy())
    heading = f"Age bin x {title}: imbalance {ratio:.1f}x (largest cell / smallest cell)"
    if view == "Heatmap":
        fig = px.imshow(
            table,
            text_auto=True,
            aspect="auto",
            title=heading,
            labels={"color": "images", "x": title, "y": "age bin"},
        )
    else:
        long = table.reset_index().melt(id_vars="bin_label", value_name="images")
        fig = px.bar(
            long,
            x="bin_label",
            y="images",
            color=column,
            color_discrete_map=colors,
            category_orders={column: list(colors)},
            labels=LABELS,
            title=heading,
        )
    col.plotly_chart(fig, width="stretch")

st.header("Sample faces")
c1, c2, c3, c4 = st.columns([3, 2, 3, 1])
pick_bins = c1.multiselect("Bins", range(scheme.num_bins), format_func=lambda b: scheme.labels[b])
pick_genders = c2.multiselect("Gender", list(GENDERS), format_func=GENDERS.get)
pick_races = c3.multiselect("Ethnicity", list(RACES), format_func=RACES.get)
seed = c4.number_input("Shuffle", 0, 10_000, 0)
sample = eda.sample_faces(data, pick_bins, pick_genders, pick_races, n=24, seed=int(seed))
if sample.empty:
    st.info("No image matches these filters.")
else:
    show_images(sample["path"].tolist(), [eda.caption(r) for _, r in sample.iterrows()], width=120)

st.header("Rebalancing preview")
c1, c2, c3, c4 = st.columns(4)
strategy = c1.selectbox("Strategy", STRATEGIES, index=1)
by_race = c2.toggle("By bin x ethnicity", value=False)
target = c3.number_input(
    "Images per group (cap or floor)",
    1,
    50_000,
    default_target(data, scheme, by_race),
    disabled=strategy in {"none", "class_weights"},
)
power = c4.slider(
    "Balance strength",
    0.0,
    1.0,
    OPTIONS["rebalance_power"].default,
    0.25,
    help=OPTIONS["rebalance_power"].help,
    disabled=strategy != "class_weights",
)
preview = eda.rebalance_preview(data, scheme, strategy, int(target), by_race, power)
st.plotly_chart(
    px.bar(
        preview.table,
        x="bin_label",
        y="images",
        color="when",
        color_discrete_map={"before": "#BAB0AC", "after": "#4C78A8"},
        labels={**LABELS, "race_name": "ethnicity"},
        barmode="group",
        facet_col="race_name" if by_race else None,
        facet_col_wrap=3,
        title=preview.title,
    ),
    width="stretch",
)
