"""Turn a training run (or the committed release head) into the served SavedModel + model card.

The release model is dlib's pretrained tower (weights from face-recognition-models) joined with a
head whose few numbers live in `training/release/release_head.json`; rebuilding it therefore takes
seconds and needs no LFW, which is how a fresh machine gets `models/release`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

RELEASE_HEAD = Path(__file__).resolve().parent / "release" / "release_head.json"
RELEASE_VERSION = "2026.11.1"
DEFAULT_OUT = Path("models/release")


def _provenance(extra_files: list[tuple[Path, str, str]]) -> list[dict[str, str]]:
    from faceverify.weights import model_path, sha256_of

    rows = []
    for name, what in (
        ("dlib_face_recognition_resnet_model_v1.dat", "dlib ResNet face descriptor (tower weights)"),
        ("shape_predictor_5_face_landmarks.dat", "dlib 5-point landmarks (alignment, faceverify)"),
    ):
        path = model_path(name)
        rows.append(
            {
                "file": name,
                "sha256": sha256_of(path),
                "role": what,
                "source": "face-recognition-models 0.3.0 (PyPI), from dlib-models by Davis King",
                "license": "public domain (CC0)",
            }
        )
    from faceverify import yunet

    rows.append(
        {**yunet.PROVENANCE, "role": "YuNet face detector: box, 5 landmarks, score (faceverify.yunet)"}
    )
    for path, role, source in extra_files:
        rows.append(
            {
                "file": str(path.name),
                "sha256": sha256_of(path),
                "role": role,
                "source": source,
                "license": "MIT (this project)",
            }
        )
    return rows


def head_from_record(record: dict[str, Any]) -> Any:
    from training.siamese import build_similarity_head

    head = build_similarity_head(int(record["embedding_dim"]), record["distance"])
    kernel = np.asarray(record["kernel"], dtype=np.float32).reshape(-1, 1)
    head.get_layer("classifier").set_weights([kernel, np.asarray([record["bias"]], dtype=np.float32)])
    return head


def export_from_head_record(
    record: dict[str, Any],
    out: Path,
    *,
    version: str,
    name: str,
    metrics: dict[str, Any] | None,
    commands: list[str],
    head_file: Path | None,
) -> Path:
    """Frozen dlib tower + a head stored as JSON -> served model."""
    from training.export import build_model_card, export_served_model
    from training.siamese import build_embedding_model
    from training.towers import build_dlib_tower

    if record["tower"] != "dlib_resnet":
        raise ValueError("a head record only rebuilds a model on the frozen dlib_resnet tower")
    embedding = build_embedding_model(build_dlib_tower(), 150, mirror=bool(record["mirror"]))
    head = head_from_record(record)
    extra = (
        [(head_file, "similarity head (distance + logistic), trained by faceverify train", "this repository")]
        if head_file is not None
        else []
    )
    card = build_model_card(
        name=name,
        version=version,
        tower="dlib_resnet_v1",
        distance=record["distance"],
        input_size=150,
        embedding_dim=int(record["embedding_dim"]),
        mirror=bool(record["mirror"]),
        thresholds=record["thresholds"],
        metrics={"heldout": record.get("metrics", {}), **(metrics or {})},
        provenance=_provenance(extra),
        commands=[record.get("command", "")] + commands,
        data=record.get("data"),
        extra={"head": {"kernel": record["kernel"], "bias": record["bias"]}},
    )
    return export_served_model(embedding, head, out, card)


def export_from_run(
    run_dir: Path, out: Path, *, version: str, metrics: dict[str, Any] | None, commands: list[str]
) -> Path:
    """A run dir written by `faceverify train` -> served model. A frozen-tower run is rebuilt from its
    head.json; any other run reloads its best Keras weights into the same architecture."""
    from training.export import build_model_card, export_served_model
    from training.towers import tower_spec
    from training.train import TrainConfig, build_training_model

    run_dir = Path(run_dir)
    record = json.loads((run_dir / "head.json").read_text())
    spec = tower_spec(record["tower"])
    config = json.loads((run_dir / "config.json").read_text())
    if record["tower"] == "dlib_resnet" and int(config.get("fine_tune_stages", 0)) == 0:
        return export_from_head_record(
            record,
            out,
            version=version,
            name=f"faceverify-{record['tower']}-{record['distance']}",
            metrics=metrics,
            commands=commands,
            head_file=run_dir / "head.json",
        )
    cfg = TrainConfig(
        data=Path(config["data"]),
        tower=config["tower"],
        distance=config["distance"],
        fine_tune_stages=int(config.get("fine_tune_stages", 0)),
        mirror=config.get("mirror"),
        seed=int(config["seed"]),
    )
    model, _ = build_training_model(cfg)
    dummy = np.zeros((1, 150, 150, 3), np.float32)
    model((dummy, dummy))
    model.load_weights(str(run_dir / "best.weights.h5"))
    card = build_model_card(
        name=f"faceverify-{record['tower']}-{record['distance']}",
        version=version,
        tower=record["tower"],
        distance=record["distance"],
        input_size=150,
        embedding_dim=spec.embedding_dim,
        mirror=cfg.resolved_mirror(),
        thresholds=record["thresholds"],
        metrics={"heldout": record.get("metrics", {}), **(metrics or {})},
        provenance=_provenance([(run_dir / "best.weights.h5", "trained Siamese weights", str(run_dir))]),
        commands=[record.get("command", "")] + commands,
        data=record.get("data"),
    )
    return export_served_model(model.embedding, model.head, out, card)


def export_release(
    out: Path = DEFAULT_OUT,
    head_file: Path = RELEASE_HEAD,
    version: str = RELEASE_VERSION,
    metrics: dict[str, Any] | None = None,
    commands: list[str] | None = None,
) -> Path:
    record = json.loads(Path(head_file).read_text())
    lfw = record.get("lfw_view2")
    merged = {**({"lfw_view2": lfw} if lfw else {}), **(metrics or {})}
    return export_from_head_record(
        record,
        out,
        version=version,
        name="faceverify-dlib-resnet-cosine",
        metrics=merged,
        commands=commands or [],
        head_file=Path(head_file),
    )
