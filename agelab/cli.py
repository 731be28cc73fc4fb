"""``python -m agelab VERB``: one entry point for every task.

Each verb's command line lives in ``agelab/commands/<verb>.py``, imported only when the verb is used,
so ``index`` never pays for importing TensorFlow.
"""

from __future__ import annotations

import importlib
import sys

VERBS: dict[str, tuple[str, str]] = {
    "setup": ("agelab.commands.setup", "Make the UTKFace images, Keras weights and face detector available."),
    "index": (
        "agelab.commands.index",
        "Build or load the index of a UTKFace folder or a labels.csv folder and report its flaws.",
    ),
    "train": ("agelab.commands.train", "Train a model: python -m agelab train key=value ..."),
    "sweep": ("agelab.commands.sweep", "Launch a grid of runs: python -m agelab sweep key=a,b other=x,y ..."),
    "runs": (
        "agelab.commands.runs",
        "List, launch (here or on Ray), watch, and stop runs: python -m agelab runs --help",
    ),
    "cluster": (
        "agelab.commands.cluster",
        "Start, inspect and stop a Ray head on 127.0.0.1: python -m agelab cluster up|status|down",
    ),
    "evaluate": ("agelab.commands.evaluate", "Evaluate a saved model on a folder of UTKFace-named images."),
    "rescore": (
        "agelab.commands.rescore",
        "Score runs' models on the shared test split, so that their test metrics compare.",
    ),
    "predict": ("agelab.commands.predict", "Predict age group and gender for the faces in images."),
    "calibrate": (
        "agelab.commands.calibrate",
        "Fit a saved model's confidence on the validation split and record it in its sidecar.",
    ),
    "ensemble": (
        "agelab.commands.ensemble",
        "Average trained models (and their mirror views) into one model, calibrated and exported.",
    ),
    "export": (
        "agelab.commands.export",
        "Export a saved model to LiteRT (X.tflite beside X.keras), which then serves it.",
    ),
}


def usage() -> str:
    lines = ["usage: python -m agelab VERB [options]", "", "verbs:"]
    lines += [f"  {verb:<9} {help_}" for verb, (_, help_) in VERBS.items()]
    lines += ["", "python -m agelab VERB --help shows a verb's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        from agelab.config_options import suggest

        hint = suggest(verb, VERBS)
        print(f"agelab: unknown verb {verb!r}; choose from {', '.join(VERBS)}.{hint}", file=sys.stderr)
        return 2
    module = importlib.import_module(VERBS[verb][0])
    return int(module.cli(rest) or 0)
