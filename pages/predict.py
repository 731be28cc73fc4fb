"""Predict: age group, age and gender for every face in uploaded photos, a camera snapshot, or live video."""

from __future__ import annotations

from agelab.import_order import load_srtp_first, webrtc_importable

# streamlit-webrtc crashes the process if it is imported after TensorFlow; claim its library first.
load_srtp_first()

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from agelab.annotate import annotate  # noqa: E402
from agelab.backends import BACKEND_LABELS  # noqa: E402
from agelab.face_boxes import left_to_right, missed_faces_hint  # noqa: E402
from agelab.faces import FaceDetector  # noqa: E402
from agelab.images import ImageError, image_format, load_image  # noqa: E402
from agelab.live import LiveAnnotator, rtc_configuration  # noqa: E402
from agelab.metric_names import METRICS, SCORES, from_run_metrics  # noqa: E402
from agelab.model_files import ModelError, available_models, default_model, model_stamp  # noqa: E402
from agelab.paths import models_dir, runs_dir  # noqa: E402
from agelab.predictor import FaceResult, Predictor, load_predictor, predict_image  # noqa: E402
from agelab.quality_flags import flags_sentence, image_flags  # noqa: E402
from agelab.tracking import live_note  # noqa: E402
from streamlit_setup import keep_models_warm, through_app  # noqa: E402

through_app()
keep_models_warm()

ACCEPTED = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}
DETECTORS = {
    "auto": "Automatic (short range, and full range unless the faces fill the photo)",
    "short": "Short range (close-ups, webcam)",
    "full": "Full range (group photos, faces far away)",
}
DETECTOR_NAMES = {
    "auto": "short-range (and full-range, where faces are small)",
    "short": "short-range",
    "full": "full-range",
}
MODES = ("Upload", "Camera snapshot", "Live webcam")


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def get_predictor(path: str, mtime: float, backend: str = "auto") -> Predictor:
    return load_predictor(path, backend)


@st.cache_resource(show_spinner="Loading the face detector...")
def get_detector(kind: str) -> FaceDetector:
    return FaceDetector(kind, mode="image")


@st.cache_data(ttl=15, show_spinner=False)
def model_table(models_folder: str, runs_folder: str) -> list[dict]:
    """The available models; the folders are arguments so that moving them refreshes the cache."""
    rows = []
    for info in available_models():
        row = {
            "model": info.name,
            "about": info.summary,
            "kind": info.kind,
            "network": info.model,
            "bins": info.bins,
        }
        scores = from_run_metrics(info.metrics)
        row |= {METRICS[name].header: scores[name] for name in SCORES}
        rows.append(row | {"path": str(info.path)})
    return rows


def face_rows(results: list[FaceResult]) -> pd.DataFrame:
    """One row per face, numbered as on the photo, what matters first: age, age group, gender; then
    how sure, then where."""
    rows = []
    for i, r in enumerate(results, start=1):
        p = r.prediction
        rows.append(
            {
                "face": i,
                "age": round(p.age, 1),
                "age group": p.bin_label,
                "probability": p.bin_prob,
                "gender": p.gender,
                "gender probability": p.gender_prob,
                "detection": r.score,
                # Why the prediction should not be trusted (empty when it can be).
                "caution": "; ".join(p.reasons),
                "top 3": ", ".join(f"{label} {prob:.0%}" for label, prob in p.top3),
                "box (x, y, w, h)": str(r.box),
            }
        )
    return pd.DataFrame(rows)


def show_results(image, results: list[FaceResult]) -> None:
    """The photo with numbered boxes beside the table, both left to right."""
    results = [results[i] for i in left_to_right([r.box for r in results])]
    left, right = st.columns([1, 1])
    left.image(annotate(image, results), width="stretch")
    right.dataframe(
        face_rows(results),
        hide_index=True,
        width="stretch",
        column_config={
            "face": st.column_config.NumberColumn(width=40),
            "age": st.column_config.NumberColumn("age (y)", format="%.1f", width=60),
            "age group": st.column_config.TextColumn(width="small"),
            "probability": st.column_config.ProgressColumn(
                "group prob.", format="percent", min_value=0, max_value=1, width=90
            ),
            "gender": st.column_config.TextColumn(width=65),
            "gender probability": st.column_config.NumberColumn("gender prob.", format="percent", width=90),
            "detection": st.column_config.NumberColumn(format="%.2f", width=70),
        },
    )
    for i, r in enumerate(results, start=1):
        if r.prediction.uncertain:
            right.warning(
                f"Face {i} is uncertain (marked ? on the photo): {'; '.join(r.prediction.reasons)}."
            )


def show_photo(
    key: str, name: str, data: bytes, predictor: Predictor, detector: FaceDetector, min_score: float
):
    """Decode one photo (in memory only), find its faces, and show them; a clear error otherwise."""
    if not data:
        st.error(f"{name}: refused, the file is empty (0 bytes).")
        return
    fmt = image_format(data)
    if fmt not in ACCEPTED:
        found = f"it is {fmt}" if fmt else "it is not an image"
        st.error(f"{name}: refused, only JPEG, PNG and WebP photos are accepted ({found}).")
        return
    try:
        image = load_image(data, name=name)
    except ImageError as exc:
        st.error(str(exc))
        return
    results = predict_image(image, detector, predictor, min_score)
    st.markdown(f"**{name}**: {len(results)} face{'s' if len(results) != 1 else ''}")
    if doubt := flags_sentence(image_flags(image)):
        st.warning(f"{name}: {doubt}", icon=":material/warning:")
    if hint := missed_faces_hint(image.shape[1], image.shape[0], [r.box for r in results]):
        st.info(f"{name}: {hint}.")
    if results:
        show_results(image, results)
        return
    st.warning(f"No face found in {name} with detection confidence {min_score:.2f} or more.")
    if st.checkbox("Predict on the whole image as one face", key=f"whole_{key}"):
        show_results(image, predict_image(image, None, predictor))
    else:
        st.image(image, width=320)


def live_view(predictor: Predictor, kind: str, min_score: float) -> None:
    if not webrtc_importable():
        st.error(
            "The live webcam cannot start in this process: its WebRTC library must load before "
            "TensorFlow. Restart the app (`make run`) and open this page."
        )
        return
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    try:
        rtc = rtc_configuration()
    except ValueError as exc:
        st.error(str(exc))
        return
    # The webcam is a close-up: short range alone keeps its frame rate ("auto" would add full range).
    kind = "short" if kind == "auto" else kind
    key = (kind, str(predictor.model_path))
    annotator: LiveAnnotator | None = st.session_state.get("live_annotator")
    if annotator is None or st.session_state.get("live_key") != key:
        # A VIDEO-mode detector of its own per browser session: its timestamps belong to one stream.
        annotator = LiveAnnotator(FaceDetector(kind, mode="video"), predictor, min_score)
        st.session_state["live_annotator"], st.session_state["live_key"] = annotator, key
    annotator.min_score = min_score

    ctx = webrtc_streamer(
        key="agelab-live",
        mode=WebRtcMode.SENDRECV,
        rtc_configuration=rtc,
        # Runs in the video thread: it only uses the annotator, whose detector and model are locked.
        video_frame_callback=annotator.on_video_frame,
        media_stream_constraints={"video": True, "audio": False},
        # Frames that arrive while one is being processed are dropped, so the video stays live.
        async_processing=True,
    )
    st.caption(
        live_note(predictor) + " ICE servers come from AGELAB_ICE_SERVERS (JSON); none are needed on "
        "this machine, a STUN/TURN server is for use across networks."
    )

    @st.fragment(run_every=1.0)
    def live_stats() -> None:
        if ctx.state.playing:
            stats = annotator.stats()
            a, b, c = st.columns(3)
            a.metric("frames per second", f"{stats['fps']:.1f}")
            b.metric("ms per frame", f"{stats['ms']:.0f}")
            c.metric("faces", stats["faces"])

    live_stats()


st.title("Predict")
st.caption(
    "Privacy: photos and camera frames are processed in memory only. Nothing uploaded or captured is "
    "written to disk."
)

models = model_table(str(models_dir()), str(runs_dir()))
if not models:
    st.info(
        "No trained model yet. Train one on the Train page, or put a `.keras` model with its `.json` "
        "sidecar in the models folder."
    )
    st.stop()

with st.expander("Models and their test metrics", expanded=False):
    st.dataframe(pd.DataFrame(models).drop(columns=["path"]), hide_index=True)
names = [m["model"] for m in models]
shipped = default_model()
choice = st.selectbox(
    "Model",
    names,
    index=next((i for i, m in enumerate(models) if m["path"] == str(shipped)), 0),
    help="Finished training runs and the models folder's .keras files. Two models ship: agelab-default.keras, "
    "the most accurate, and agelab-fast.keras, for slow machines.",
)
model_path = next(m["path"] for m in models if m["model"] == choice)
if about := next(m["about"] for m in models if m["model"] == choice):
    st.caption(about)
runtime = st.selectbox(
    "Runtime",
    list(BACKEND_LABELS),
    format_func=BACKEND_LABELS.get,
    help="int8 is 1.5x faster than float32 for the model's step; on the test split its accuracy change "
    "was inside every 95 % interval, though about one face in ten gets a neighbouring age group.",
)

controls = st.columns([2, 2, 3])
mode = controls[0].radio("Input", MODES, horizontal=False)
kind = controls[1].radio("Face detector", list(DETECTORS), format_func=DETECTORS.get)
min_score = controls[2].slider("Detection confidence", 0.2, 0.95, 0.5, 0.05)

try:
    predictor = get_predictor(model_path, model_stamp(model_path), runtime)
    detector = get_detector(kind)
except (ModelError, RuntimeError, OSError) as exc:
    st.error(str(exc))
    st.stop()
st.caption(
    f"{choice}: {predictor.scheme.num_bins} age groups ({predictor.scheme.spec}), input {predictor.image_size} px; "
    f"{predictor.backend_note}; faces found by MediaPipe's {DETECTOR_NAMES[kind]} detector, run by {detector.runtime}"
)
if predictor.warning:
    st.warning(predictor.warning)

if mode == "Upload":
    files = st.file_uploader(
        "Photos (JPEG, PNG or WebP)", type=["jpg", "jpeg", "png", "webp"], accept_multiple_files=True
    )
    for i, file in enumerate(files or []):
        show_photo(f"up{i}_{file.name}", file.name, file.getvalue(), predictor, detector, min_score)
elif mode == "Camera snapshot":
    shot = st.camera_input("Take a photo")
    if shot is not None:
        show_photo("camera", "camera snapshot", shot.getvalue(), predictor, detector, min_score)
else:
    live_view(predictor, kind, min_score)
