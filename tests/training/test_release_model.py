"""The committed release head rebuilds the served release model in seconds, without LFW."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.build_model import RELEASE_HEAD, export_release


def test_release_model_builds_from_dlib_weights_and_the_committed_head(
    tmp_path: Path,
    mini_lfw: Path,
    pipeline,  # type: ignore[no-untyped-def]
) -> None:
    from faceverify.decode import decode_image
    from faceverify.weights import model_path, sha256_of

    head = json.loads(RELEASE_HEAD.read_text())
    out = export_release(tmp_path / "release")
    card = json.loads((out / "model_card.json").read_text())
    assert card["version"] and card["distance"] == "cosine" and card["test_time_mirror"] is True
    assert card["thresholds"] == head["thresholds"]
    assert card["metrics"]["lfw_view2"]["pairs"] == 6000
    shas = {p["file"]: p["sha256"] for p in card["provenance"]}
    name = "dlib_face_recognition_resnet_model_v1.dat"
    assert shas[name] == sha256_of(model_path(name))
    assert shas["release_head.json"] == sha256_of(RELEASE_HEAD)
    from faceverify.yunet import MODEL_SHA256

    assert shas["face_detection_yunet_2023mar_int8bq.onnx"] == MODEL_SHA256

    chips = []
    for person, n in (("Al_Gore", 0), ("Al_Gore", 1), ("Andre_Agassi", 0)):
        photo = sorted((mini_lfw / person).iterdir())[n]
        chips.append(pipeline.largest_face(decode_image(photo.read_bytes())).chip)
    loaded = tf.saved_model.load(str(out))
    emb = loaded.signatures["embed"](chips=tf.constant(np.stack(chips)))["embeddings"].numpy()
    sim = loaded.signatures["score"](probe=tf.constant(emb[0]), bank=tf.constant(emb))["similarity"].numpy()
    threshold = card["thresholds"]["detection_threshold"]
    assert sim[0] > 0.99 and sim[1] > threshold > sim[2], sim  # self, same person, stranger
