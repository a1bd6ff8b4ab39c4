"""Training end to end on real photos: a tiny Siamese model trains, an interrupted run resumes from
its checkpoint to the same weights, the frozen-dlib head trains on cached embeddings, exports, and
`faceverify evaluate` runs the LFW protocol on it."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from training.train import SimulatedCrash, TrainConfig, train


def _tiny_cfg(data: Path, run_dir: Path, cache_dir: Path, **kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    base = dict(
        data=data,
        run_dir=run_dir,
        tower="tiny",
        distance="cosine",
        epochs=3,
        batch_size=8,
        train_pairs=40,
        val_pairs=12,
        val_fraction=0.34,
        cache_dir=cache_dir,
        progress=False,
        learning_rate=1e-3,
        checkpoint_every=2,
        seed=11,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _weights(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    return out


def test_interrupted_run_resumes_from_its_checkpoint_to_the_same_weights(
    mini_lfw: Path,
    cache_dir: Path,
    tmp_path: Path,
    pipeline,  # type: ignore[no-untyped-def]
) -> None:
    straight = tmp_path / "straight"
    metrics = train(_tiny_cfg(mini_lfw, straight, cache_dir), pipeline)
    assert metrics["epochs_run"] == 3 and metrics["images_no_face_found"] == 0
    history = (straight / "history.csv").read_text().splitlines()
    assert len(history) == 4  # header + 3 epochs
    for name in ("loss.png", "roc.png", "score_histograms.png", "example_pairs.png"):
        assert (straight / "plots" / name).stat().st_size > 1000

    crashed = tmp_path / "crashed"
    with pytest.raises(SimulatedCrash):
        train(_tiny_cfg(mini_lfw, crashed, cache_dir, crash_after_steps=7), pipeline)  # mid-epoch 2
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(crashed / "checkpoints"))
    assert latest is not None and latest.endswith("ckpt-6")
    reader = tf.train.load_checkpoint(latest)
    saved = {
        k.split("/")[0]: reader.get_tensor(k)
        for k in reader.get_variable_to_shape_map()
        if k.split("/")[0] in ("epoch", "step", "step_in_epoch")
    }
    assert (int(saved["epoch"]), int(saved["step"]), int(saved["step_in_epoch"])) == (1, 6, 1)

    resumed = train(_tiny_cfg(mini_lfw, crashed, cache_dir), pipeline)
    assert resumed["epochs_run"] == 3
    a, b = _weights(straight / "best.weights.h5"), _weights(crashed / "best.weights.h5")
    assert a.keys() == b.keys() and len(a) > 4
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    rows_a = (straight / "history.csv").read_text().splitlines()
    rows_b = (crashed / "history.csv").read_text().splitlines()
    val_a = [r.split(",")[4] for r in rows_a[1:]]
    val_b = [r.split(",")[4] for r in rows_b[1:]]
    np.testing.assert_allclose(np.array(val_a, float), np.array(val_b, float), rtol=1e-5)


@pytest.mark.slow  # ~20 s: trains, exports twice and runs the protocol twice
def test_frozen_dlib_head_trains_exports_and_evaluates(
    mini_lfw: Path,
    cache_dir: Path,
    tmp_path: Path,
    tiny_pairs_file: Path,
    pipeline,  # type: ignore[no-untyped-def]
) -> None:
    from training.build_model import export_from_run
    from training.evaluate import JSON_KEYS, evaluate

    run = tmp_path / "dlib"
    cfg = TrainConfig(
        data=mini_lfw,
        run_dir=run,
        tower="dlib_resnet",
        epochs=25,
        batch_size=16,
        train_pairs=60,
        val_pairs=20,
        val_fraction=0.34,
        cache_dir=cache_dir,
        progress=False,
        seed=0,
    )
    metrics = train(cfg, pipeline)
    # dlib's descriptor separates these different, well-known people easily.
    assert metrics["heldout_accuracy"] >= 0.9 and metrics["heldout_auc"] >= 0.95
    record = json.loads((run / "head.json").read_text())
    assert record["distance"] == "cosine" and record["kernel"][0] < 0  # larger distance, lower similarity
    assert list((cache_dir / "embeddings").rglob("*.npy"))  # embeddings cached, not recomputed per epoch

    model_dir = export_from_run(run, tmp_path / "model", version="t-dlib", metrics=None, commands=[])
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["version"] == "t-dlib" and card["distance"] == "cosine" and card["embedding_dim"] == 128
    assert {p["file"] for p in card["provenance"]} >= {
        "dlib_face_recognition_resnet_model_v1.dat",
        "head.json",
    }

    out_json = tmp_path / "eval.json"
    result = evaluate(
        mini_lfw,
        tiny_pairs_file,
        model_dir,
        json_out=out_json,
        plots_dir=tmp_path / "plots",
        pipeline=pipeline,
        progress=False,
        scores_csv=tmp_path / "scores.csv",
    )
    written = json.loads(out_json.read_text())
    rows = (tmp_path / "scores.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[0].startswith("fold,same,score")
    assert tuple(written) == JSON_KEYS
    assert written["pairs"] == 8 and written["no_face_found"] == 0 and written["ms_per_image"] > 0
    assert written["auc"] == pytest.approx(result["auc"]) and written["auc"] >= 0.9
    scores, labels = result["_extra"]["scores"], result["_extra"]["labels"]
    assert scores[labels].min() > scores[~labels].max() - 0.2
    assert (tmp_path / "plots" / "roc.png").exists() and (
        tmp_path / "plots" / "score_histograms.png"
    ).exists()

    # The same through the command line: `faceverify export RUN` then `faceverify evaluate`.
    from service.cli.main import main

    cli_model = tmp_path / "model_cli"
    assert main(["export", str(run), "--out", str(cli_model), "--version", "t-cli"]) == 0
    cli_json = tmp_path / "eval_cli.json"
    argv = ["evaluate", "--images", str(mini_lfw), "--pairs", str(tiny_pairs_file), "--model", str(cli_model)]
    assert main([*argv, "--json", str(cli_json), "--quiet"]) == 0
    via_cli = json.loads(cli_json.read_text())
    for key in JSON_KEYS:
        if key != "ms_per_image":
            assert via_cli[key] == pytest.approx(written[key], abs=1e-6), key


def test_cli_help_explains_every_option() -> None:
    import argparse

    from training.cli import register

    parser = argparse.ArgumentParser(prog="faceverify")
    sub = parser.add_subparsers()
    register(sub)
    # Every command training registers (else the loop below checks nothing) ...
    assert set(sub.choices) == {"train-seed", "compare-towers", "fuse", "train", "export", "evaluate"}
    for name, action_parser in sub.choices.items():
        options = [action for action in action_parser._actions if action.dest != "help"]
        assert options, f"faceverify {name} has no options"
        for action in options:  # ... and every option of each has its help text
            assert action.help, f"faceverify {name} {action.dest} has no help"
