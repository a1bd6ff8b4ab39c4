"""Embedding towers the Siamese network can be built on.

- `koch`: the seed's from-scratch CNN (Koch et al. style), kept as the reference it was; fixed for
  Keras 3 (a single output tensor, not a one-element list) and fed the same 150x150 chip as every other
  tower, resized to its 100x100 input inside the model so serving needs no special case.
- `dlib_resnet`: dlib's pretrained metric-learning ResNet rebuilt in Keras (faceverify.resnet),
  frozen by default, optionally with its last stage unfrozen for fine-tuning.
- `tiny`: a small random CNN for fast tests of the training mechanics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import keras
from keras import layers

TowerName = Literal["dlib_resnet", "koch", "tiny"]
TOWERS: tuple[TowerName, ...] = ("dlib_resnet", "koch", "tiny")
CHIP_SIZE = 150
KOCH_INPUT = 100


@dataclass(frozen=True)
class TowerSpec:
    name: TowerName
    embedding_dim: int
    # A tower whose weights never change during training: its embeddings can be computed once and
    # cached, and only the head is trained on them.
    frozen: bool


def build_koch_tower(seed: int = 0, chip_size: int = CHIP_SIZE) -> keras.Model:
    """The seed's CNN: Conv 64 10x10 -> pool -> Conv 128 7x7 -> pool -> Conv 128 4x4 -> pool ->
    Conv 256 4x4 -> Flatten -> Dense 4096 sigmoid, on a 100x100 RGB input scaled to [0, 1]."""
    init = keras.initializers.GlorotUniform(seed=seed)
    chips = keras.Input((chip_size, chip_size, 3), dtype="float32", name="chips")
    x = layers.Resizing(KOCH_INPUT, KOCH_INPUT, interpolation="bilinear", name="resize_100")(chips)
    x = layers.Rescaling(1.0 / 255.0, name="scale_01")(x)
    x = layers.Conv2D(64, 10, activation="relu", kernel_initializer=init, name="conv1")(x)
    x = layers.MaxPooling2D(2, padding="same", name="pool1")(x)
    x = layers.Conv2D(128, 7, activation="relu", kernel_initializer=init, name="conv2")(x)
    x = layers.MaxPooling2D(2, padding="same", name="pool2")(x)
    x = layers.Conv2D(128, 4, activation="relu", kernel_initializer=init, name="conv3")(x)
    x = layers.MaxPooling2D(2, padding="same", name="pool3")(x)
    x = layers.Conv2D(256, 4, activation="relu", kernel_initializer=init, name="conv4")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(4096, activation="sigmoid", kernel_initializer=init, name="embedding")(x)
    return keras.Model(inputs=chips, outputs=x, name="koch_cnn")  # outputs=x: a tensor, not [x]


def build_tiny_tower(seed: int = 0, chip_size: int = CHIP_SIZE, embedding_dim: int = 32) -> keras.Model:
    init = keras.initializers.GlorotUniform(seed=seed)
    chips = keras.Input((chip_size, chip_size, 3), dtype="float32", name="chips")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(chips)
    x = layers.Conv2D(8, 5, strides=4, activation="relu", kernel_initializer=init)(x)
    x = layers.Conv2D(16, 3, strides=2, activation="relu", kernel_initializer=init)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(embedding_dim, kernel_initializer=init, name="embedding")(x)
    return keras.Model(inputs=chips, outputs=x, name="tiny_cnn")


def build_dlib_tower(fine_tune_stages: int = 0) -> keras.Model:
    """dlib's ResNet with its weights; `fine_tune_stages` > 0 unfreezes that many top stages (1 = the
    256-filter stage) plus the final projection, everything else stays frozen."""
    from faceverify.resnet import build_dlib_resnet, set_trainable_stages

    model = build_dlib_resnet()
    if fine_tune_stages > 0:
        set_trainable_stages(model, fine_tune_stages)
    else:
        model.trainable = False
    return model


def tower_spec(name: TowerName, fine_tune_stages: int = 0) -> TowerSpec:
    if name == "dlib_resnet":
        return TowerSpec(name, 128, frozen=fine_tune_stages == 0)
    if name == "koch":
        return TowerSpec(name, 4096, frozen=False)
    if name == "tiny":
        return TowerSpec(name, 32, frozen=False)
    raise ValueError(f"unknown tower {name!r}; choose one of {TOWERS}")


def build_tower(name: TowerName, seed: int = 0, fine_tune_stages: int = 0) -> keras.Model:
    if name == "dlib_resnet":
        return build_dlib_tower(fine_tune_stages)
    if name == "koch":
        return build_koch_tower(seed)
    if name == "tiny":
        return build_tiny_tower(seed)
    raise ValueError(f"unknown tower {name!r}; choose one of {TOWERS}")
