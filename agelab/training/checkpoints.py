"""Per-epoch checkpoints of a run, and what resuming from one needs.

After each epoch a run writes ``checkpoints/epoch-NNNN.npz`` (by rename, so a half-written one is
never read as whole) and keeps the last ``keep_checkpoints`` of them. One file holds:

- the full model's variables, its layers' random-seed states included (dropout draws on after a
  resume as it would have without the interruption);
- the optimizer's variables (its step count drives the learning-rate schedule), of the stage's model;
- the weights of the best epoch so far, when they are not the current ones (``keep=best``);
- ``state``: the stage and epoch reached, the history, the recorder's counters and early stopping's.

``train resume=RUN`` reads the latest one (:func:`latest`) and continues the run in its folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agelab import atomic

FOLDER = "checkpoints"
NAME = re.compile(r"^epoch-(\d{4,})\.npz$")


@dataclass
class Checkpoint:
    """One epoch's saved state (see the module's docstring)."""

    path: Path
    state: dict[str, Any]
    model: list[np.ndarray]
    optimizer: list[np.ndarray]
    best: list[np.ndarray] | None

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])


def folder(run_dir: Path) -> Path:
    return Path(run_dir) / FOLDER


def model_values(model: Any) -> list[np.ndarray]:
    """Every variable of ``model`` that training changes or draws from: its weights, then the states of
    its random-seed generators (not in ``get_weights``), in a fixed order."""
    seeds = [v for v in model.variables if "seed_generator_state" in v.path]
    return [np.asarray(w) for w in model.get_weights()] + [np.asarray(v.numpy()) for v in seeds]


def restore_model(model: Any, values: list[np.ndarray]) -> None:
    seeds = [v for v in model.variables if "seed_generator_state" in v.path]
    count = len(model.get_weights())
    if len(values) != count + len(seeds):
        raise ValueError(
            f"the checkpoint holds {len(values)} model variables and this model has {count + len(seeds)};"
            " it was saved by another architecture"
        )
    model.set_weights(values[:count])
    for variable, value in zip(seeds, values[count:]):
        variable.assign(value)


def optimizer_values(optimizer: Any) -> list[np.ndarray]:
    store: dict[str, Any] = {}
    optimizer.save_own_variables(store)
    return [np.asarray(store[str(i)]) for i in range(len(store))]


def restore_optimizer(model: Any, values: list[np.ndarray]) -> None:
    """Build ``model``'s (compiled) optimizer over its trainable variables, as ``fit()`` would, and load
    ``values`` into it: the step count, so the schedule goes on, and the moments."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    optimizer.load_own_variables({str(i): value for i, value in enumerate(values)})


def save(
    run_dir: Path,
    state: dict[str, Any],
    model: Any,
    optimizer: Any,
    best: list[np.ndarray] | None,
    keep: int,
) -> Path | None:
    """Write the checkpoint of epoch ``state["epoch"]``, then delete all but the last ``keep``
    (none is written when ``keep`` is 0)."""
    if keep <= 0:
        return None
    arrays: dict[str, np.ndarray] = {"state": np.array(atomic.dumps(state))}
    for prefix, values in (("model", model_values(model)), ("optimizer", optimizer_values(optimizer))):
        arrays.update({f"{prefix}_{i:05d}": value for i, value in enumerate(values)})
    for i, value in enumerate(best or []):
        arrays[f"best_{i:05d}"] = np.asarray(value)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez would add ".npz" to the temporary name
            np.savez(handle, **arrays)

    path = atomic.write_with(folder(run_dir) / f"epoch-{int(state['epoch']):04d}.npz", write)
    for old in saved(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def saved(run_dir: Path) -> list[Path]:
    """The run's checkpoint files, oldest epoch first."""
    found = [(int(m[1]), p) for p in folder(run_dir).glob("epoch-*.npz") if (m := NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load(path: Path) -> Checkpoint:
    """One checkpoint file; ValueError with the file's name when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            state = json.loads(str(data["state"]))
            parts: dict[str, list[np.ndarray]] = {"model": [], "optimizer": [], "best": []}
            for key in sorted(k for k in data.files if k != "state"):
                parts[key.split("_", 1)[0]].append(data[key])
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"checkpoint {path} cannot be read ({err})") from None
    return Checkpoint(Path(path), state, parts["model"], parts["optimizer"], parts["best"] or None)


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest checkpoint that reads whole (an unreadable one is skipped for the one before), or None."""
    for path in reversed(saved(run_dir)):
        try:
            return load(path)
        except ValueError:
            continue
    return None


def remove(run_dir: Path) -> None:
    """Delete a finished run's checkpoints: it has its model, and a finished run is not resumed."""
    for path in saved(run_dir):
        path.unlink(missing_ok=True)
    try:
        folder(run_dir).rmdir()
    except OSError:
        pass  # not empty (a temporary file of a write in flight) or absent
