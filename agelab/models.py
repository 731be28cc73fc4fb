"""The model factory. Every model follows the model contract (docs/architecture.md).

A model takes RGB float32 images in 0-255 and does its own preprocessing. It is built as two
functional parts, ``features`` (image -> vector) and ``heads`` (vector -> dict of outputs), so
fast mode can train the heads on cached feature vectors and then assemble the full model from
the very same layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import agelab  # noqa: F401  (sets KERAS_HOME before keras is imported)
from agelab.backbone_weights import (  # Callers catch models.WeightsUnavailable and ask models.weights_file.
    FACE_MODEL,
    WeightsUnavailable,  # noqa: F401
    available_weights,
    weights_file,  # noqa: F401
)

import keras  # noqa: E402  isort: skip

OUTPUTS = ("age_bin", "age", "gender")
DEX_MAX_AGE = 100
# The original project's CNN (baseline_cnn) saw 64x64 grayscale images.
BASELINE_SIZE = 64
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)

# The keras.applications constructor of each ImageNet backbone (its weights file:
# agelab.backbone_weights).
APPLICATIONS: dict[str, str] = {
    "mobilenet_v2": "MobileNetV2",
    "mobilenet": "MobileNet",
    "vgg16": "VGG16",
    "resnet50": "ResNet50",
    "efficientnetb0": "EfficientNetB0",
}


@dataclass
class BuiltModel:
    """The full model and the parts that training needs to reach."""

    model: keras.Model
    features: keras.Model
    heads: keras.Model
    backbone: keras.Model | None


def _fixed_dense(units: int, kernel: np.ndarray, bias: np.ndarray | None, name: str) -> keras.layers.Dense:
    """A frozen per-pixel linear map (channel mixing), built only from standard Keras layers so a
    saved model loads anywhere without custom code."""
    layer = keras.layers.Dense(
        units,
        use_bias=bias is not None,
        trainable=False,
        name=name,
        kernel_initializer=keras.initializers.Constant(0.0),
        dtype="float32",  # an output layer: float32 under mixed precision too
    )
    layer._agelab_fixed = (kernel, bias)  # applied after build by _apply_fixed_weights
    return layer


def _apply_fixed_weights(model: keras.Model) -> None:
    for layer in _walk(model):
        fixed = getattr(layer, "_agelab_fixed", None)
        if fixed is not None:
            kernel, bias = fixed
            layer.set_weights(
                [kernel.astype("float32")] + ([bias.astype("float32")] if bias is not None else [])
            )


def _walk(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer)


def _preprocess(model_name: str, x):
    if model_name in ("mobilenet_v2", "mobilenet"):
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(x)
    if model_name in ("vgg16", "resnet50", FACE_MODEL):
        # "caffe" preprocessing: RGB -> BGR, then subtract the ImageNet mean.
        flip = np.eye(3)[::-1].copy()
        return _fixed_dense(3, flip, -np.array(IMAGENET_BGR_MEAN), "caffe_preprocess")(x)
    if model_name == "efficientnetb0":
        return x  # EfficientNet rescales and normalises inside itself.
    if model_name == "baseline_cnn":
        gray = _fixed_dense(1, np.array([[0.299], [0.587], [0.114]]), None, "grayscale")(x)
        gray = keras.layers.Resizing(BASELINE_SIZE, BASELINE_SIZE, name="resize_64")(gray)
        return keras.layers.Rescaling(1 / 255.0, name="to_0_1")(gray)
    return keras.layers.Rescaling(1 / 255.0, name="to_0_1")(x)


def _application(model_name: str, image_size: int, alpha: float, weights: str) -> keras.Model:
    constructor = getattr(keras.applications, APPLICATIONS[model_name])
    kwargs: dict[str, Any] = {
        "input_shape": (image_size, image_size, 3),
        "include_top": False,
        "weights": None,
    }
    if model_name in ("mobilenet_v2", "mobilenet"):
        kwargs["alpha"] = alpha
    if weights == "imagenet":
        # The file itself, not "imagenet": Keras would go to the network for a missing file (twice, in a
        # run) before any clear word, and for one whose hash it doubts. The 224 file serves every size.
        kwargs["weights"] = str(available_weights(model_name, alpha))
    return constructor(**kwargs)


def _face_backbone(image_size: int, weights: str) -> keras.Model:
    backbone = keras.applications.MobileNet(
        alpha=1.0, include_top=False, weights=None, input_shape=(image_size, image_size, 3)
    )
    if weights != "none":
        backbone.load_weights(str(available_weights(FACE_MODEL, 1.0)))
    return backbone


def _baseline_trunk(x):
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same", name="conv32")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", padding="same", name="conv64")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(128, 3, activation="relu", padding="same", name="conv128")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Dropout(0.25, name="trunk_dropout")(x)
    return keras.layers.Flatten(name="flatten")(x)


def _small_cnn_trunk(x):
    for i, filters in enumerate((32, 64, 128, 256)):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
        x = keras.layers.MaxPooling2D(name=f"block{i}_pool")(x)
    return keras.layers.GlobalAveragePooling2D(name="gap")(x)


def build_features(
    model_name: str, image_size: int, alpha: float = 0.0, weights: str = "none"
) -> tuple[keras.Model, keras.Model | None]:
    """The image -> feature-vector part, and the pretrained backbone inside it (or None)."""
    inputs = keras.Input((image_size, image_size, 3), name="image", dtype="float32")
    x = _preprocess(model_name, inputs)
    backbone = None
    if model_name in APPLICATIONS or model_name == FACE_MODEL:
        if model_name == FACE_MODEL:
            backbone = _face_backbone(image_size, weights)
        else:
            backbone = _application(model_name, image_size, alpha, weights)
        backbone.trainable = False
        # training=False keeps BatchNormalization in inference mode even after unfreezing,
        # which fine-tuning on a small dataset needs.
        x = backbone(x, training=False)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    elif model_name == "baseline_cnn":
        x = _baseline_trunk(x)
    elif model_name == "small_cnn":
        x = _small_cnn_trunk(x)
    else:
        raise ValueError(f"unknown model {model_name!r}")
    features = keras.Model(inputs, x, name="features")
    _apply_fixed_weights(features)
    return features, backbone


def build_heads(
    feature_dim: int, num_bins: int, age_head: str = "dex", dropout: float = 0.3, units: int = 128
) -> keras.Model:
    """Multi-task heads: age bin (softmax), age in years (DEX or regression), gender (sigmoid)."""
    features = keras.Input((feature_dim,), name="features")
    x = keras.layers.Dropout(dropout, name="head_dropout")(features)
    age_hidden = keras.layers.Dense(units, activation="relu", name="age_hidden")(x)
    age_bin = keras.layers.Dense(num_bins, activation="softmax", dtype="float32", name="age_bin")(age_hidden)
    if age_head == "dex":
        # DEX: a softmax over ages 0..100 whose expected value is the age.
        ages = keras.layers.Dense(DEX_MAX_AGE + 1, activation="softmax", dtype="float32", name="age_dist")(
            age_hidden
        )
        age = _fixed_dense(1, np.arange(DEX_MAX_AGE + 1, dtype="float32")[:, None], None, "age")(ages)
    elif age_head == "regression":
        age = keras.layers.Dense(
            1, dtype="float32", name="age", bias_initializer=keras.initializers.Constant(33.0)
        )(age_hidden)
    else:
        raise ValueError(f"unknown age_head {age_head!r}: use dex or regression")
    gender_hidden = keras.layers.Dense(units, activation="relu", name="gender_hidden")(x)
    gender = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="gender")(gender_hidden)
    heads = keras.Model(features, {"age_bin": age_bin, "age": age, "gender": gender}, name="heads")
    _apply_fixed_weights(heads)
    return heads


def assemble(features: keras.Model, heads: keras.Model) -> keras.Model:
    """The full contract model: image -> features -> heads, sharing the parts' layers."""
    inputs = keras.Input(features.input_shape[1:], name="image", dtype="float32")
    outputs = heads(features(inputs))
    # float32: under mixed precision an Identity of the global policy would cast the outputs back to float16.
    named = {name: keras.layers.Identity(name=name, dtype="float32")(outputs[name]) for name in OUTPUTS}
    return keras.Model(inputs, named, name="agelab")


def create_model(
    name: str,
    image_size: int,
    num_bins: int,
    *,
    alpha: float = 0.0,
    weights: str = "none",
    age_head: str = "dex",
    dropout: float = 0.3,
    head_units: int = 128,
) -> BuiltModel:
    """Build a model by name; see :data:`agelab.config.MODELS`."""
    features, backbone = build_features(name, image_size, alpha, weights)
    heads = build_heads(int(features.output_shape[-1]), num_bins, age_head, dropout, head_units)
    return BuiltModel(assemble(features, heads), features, heads, backbone)


def create_from_config(config: dict[str, Any], num_bins: int) -> BuiltModel:
    return create_model(
        config["model"],
        config["image_size"],
        num_bins,
        alpha=config["alpha"],
        weights=config["weights"],
        age_head=config["age_head"],
        dropout=config["dropout"],
        head_units=config["head_units"],
    )


def unfreeze_top(backbone: keras.Model, layers: int) -> int:
    """Make the top ``layers`` layers of ``backbone`` trainable (BatchNorm stays frozen).

    Returns how many layers with weights became trainable.
    """
    backbone.trainable = True
    cut = max(len(backbone.layers) - layers, 0)
    opened = 0
    for i, layer in enumerate(backbone.layers):
        trainable = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        opened += int(trainable and bool(layer.weights))
    return opened
