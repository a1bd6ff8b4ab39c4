"""LiteRT serving of the release towers (faceverify.litert): the golden test against the SavedModel's
own signatures on real LFW chips, the sha256 check, pooled interpreters under threads, the setting."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from lfw_sets import REPO, lfw_rgb

from faceverify.config import RuntimeConfig, runtime_config
from faceverify.litert import LiteRTModelError, card_files
from faceverify.model import ServedModel
from tests.live_server import release_model_dir

# Two people, several photos each, frontal and turned; both towers see each face's own chips.
NAMES = [
    "Colin_Powell_0001",
    "Colin_Powell_0005",
    "George_W_Bush_0001",
    "George_W_Bush_0010",
    "Serena_Williams_0002",
    "Tony_Blair_0010",
    "Aaron_Peirsol_0001",
    "Aaron_Peirsol_0002",
]


@pytest.fixture(scope="module")
def release() -> Path:
    path = release_model_dir()
    card = json.loads((path / "model_card.json").read_text())
    assert card_files(card), f"{path} ships no LiteRT towers: rebuild it with `faceverify export --release`"
    return path


@pytest.fixture(scope="module")
def faces(pipeline):  # type: ignore[no-untyped-def]
    from faceverify.selection import select_verify_face

    found = [select_verify_face(pipeline.faces(lfw_rgb(n))).face for n in NAMES]
    assert all(f is not None for f in found)
    return found


@pytest.fixture(scope="module")
def both(release: Path) -> tuple[ServedModel, ServedModel]:
    lite = ServedModel(release, runtime=RuntimeConfig(runtime="litert"))
    ref = ServedModel(release, runtime=RuntimeConfig(runtime="tensorflow"))
    assert (lite.runtime, ref.runtime) == ("litert", "tensorflow")
    return lite, ref


@pytest.mark.lfw
def test_litert_embeddings_and_scores_match_the_savedmodel(both, faces) -> None:  # type: ignore[no-untyped-def]
    lite, ref = both
    got = lite.embed_faces(faces)
    want = ref.embed_faces(faces)
    assert got.shape == want.shape == (len(NAMES), ref.embedding_dim)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)
    for probe_lite, probe_ref in zip(got, want, strict=True):
        s_lite = lite.score(probe_lite, got)
        s_ref = ref.score(probe_ref, want)
        np.testing.assert_allclose(s_lite, s_ref, atol=2e-5, rtol=0)
    # The decisions are real ones: a genuine pair scores high, an impostor pair low, in both runtimes.
    s = lite.score(got[0], got)
    assert s[1] > lite.operating_point.detection_threshold > s[2]


@pytest.mark.lfw
def test_one_chip_and_a_batch_give_the_same_embeddings(both, faces) -> None:  # type: ignore[no-untyped-def]
    lite, _ = both
    batch = lite.embed_faces(faces)
    one = np.concatenate([lite.embed_faces([f]) for f in faces])
    np.testing.assert_array_equal(batch, one)


@pytest.mark.lfw
def test_pooled_interpreters_are_safe_under_threads(both, faces) -> None:  # type: ignore[no-untyped-def]
    """More threads than interpreters, each embedding a different face: every result must be that
    face's own embedding (a shared interpreter would hand one thread another's output)."""
    lite, _ = both
    serial = [lite.embed_faces([f])[0] for f in faces]
    jobs = [i % len(faces) for i in range(48)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda i: lite.embed_faces([faces[i]])[0], jobs))
    for i, got in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(got, serial[i])


def test_a_changed_tflite_file_is_refused(release: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(release, copy)
    item = card_files(json.loads((copy / "model_card.json").read_text()))[0]  # type: ignore[index]
    data = bytearray((copy / item.file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / item.file).write_bytes(bytes(data))
    with pytest.raises(LiteRTModelError, match="sha256"):
        ServedModel(copy, runtime=RuntimeConfig(runtime="litert"))
    (copy / item.file).unlink()
    with pytest.raises(LiteRTModelError, match="missing"):
        ServedModel(copy)  # auto: the card promises LiteRT towers, so a missing one is an error


def test_auto_serves_a_model_without_litert_files_with_tensorflow(tmp_path: Path) -> None:
    from training.export import export_tiny_test_model

    tiny = export_tiny_test_model(tmp_path / "tiny")
    assert ServedModel(tiny).runtime == "tensorflow"
    with pytest.raises(LiteRTModelError, match="no LiteRT towers"):
        ServedModel(tiny, runtime=RuntimeConfig(runtime="litert"))


def test_runtime_setting_from_the_environment() -> None:
    assert runtime_config({}) == RuntimeConfig()
    assert runtime_config({}).runtime == "auto"
    cfg = runtime_config(
        {"FACEVERIFY_RUNTIME": "TensorFlow", "FACEVERIFY_LITERT_POOL": "3", "FACEVERIFY_LITERT_THREADS": "2"}
    )
    assert (cfg.runtime, cfg.litert_pool, cfg.litert_threads) == ("tensorflow", 3, 2)
    with pytest.raises(ValueError, match="choose one of"):
        runtime_config({"FACEVERIFY_RUNTIME": "onnx"})
    with pytest.raises(ValueError, match=">= 1"):
        runtime_config({"FACEVERIFY_LITERT_POOL": "0"})


def test_litert_serving_never_imports_tensorflow(release: Path) -> None:
    """The point of serving LiteRT for memory and start-up: TensorFlow stays out of the process."""
    code = (
        "import sys, numpy as np; from faceverify.model import ServedModel; "
        f"m = ServedModel({str(release)!r}); "
        "e = m.embed({'dlib150': np.zeros((1, 150, 150, 3), np.uint8), "
        "'arcface112': np.zeros((1, 112, 112, 3), np.uint8)}); m.score(e[0], e); "
        "print(m.runtime, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.split()[-2:] == ["litert", "False"]
