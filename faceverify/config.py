"""The one frozen pipeline configuration (production defaults) and the version derived from it.

Why one object: every setting that changes which faces are found or how chips are cut lives
here, so the pipeline version can be computed from it instead of being bumped by hand (training's
chip cache keys on :data:`PIPELINE_VERSION`; a forgotten bump used to mix two croppings).
Experimental variants are built in tools/ with ``dataclasses.replace(PRODUCTION, ...)``; the
service and training only ever use :data:`PRODUCTION`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from faceverify.geometry import Box
from faceverify.quality import QualityThresholds
from faceverify.yunet import MODEL_SHA256, YuNetConfig


@dataclass(frozen=True)
class BoxCalibration:
    """Start box for dlib's 5-point shape predictor from a YuNet box (x, y, w, h):
    ``(x + dx*w, y + dy*h, sw*w, sh*h)``. dlib's predictor was trained on dlib-detector boxes and
    has a small capture range, so the start box must look like one."""

    dx: float
    dy: float
    sw: float
    sh: float

    def apply(self, box: Box) -> Box:
        return Box(box.x + self.dx * box.w, box.y + self.dy * box.h, self.sw * box.w, self.sh * box.h)


#: Fitted by tools/pipeline_calibrate_yunet.py on LFW View 1 (peopleDevTrain): medians of the ratios
#: between YuNet's box and the dlib-style box rebuilt from the settled 5-point landmarks (600 faces;
#: p10-p90 of dx -0.21..0.02, dy 0.07..0.16, sw 1.04..1.20, sh 0.77..0.92).
YUNET_TO_DLIB = BoxCalibration(dx=-0.0978, dy=0.1158, sw=1.1258, sh=0.8465)


@dataclass(frozen=True)
class PipelineConfig:
    detector: YuNetConfig = field(default_factory=YuNetConfig)
    dlib_start: BoxCalibration = YUNET_TO_DLIB
    #: predict -> rebuild the box from the landmarks -> predict again, this many times.
    dlib_refinements: int = 1
    #: Redo YuNet's landmarks on an upright copy when dlib's eye line is tilted more than this (deg).
    upright_min_roll: float = 3.0
    dlib_chip_size: int = 150
    dlib_chip_padding: float = 0.25
    #: Enrolment gate; not part of the version (it does not change any chip).
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    #: A second face at least this wide relative to the largest makes an enrolment photo ambiguous.
    multiple_faces_width_ratio: float = 0.5

    def chip_settings(self) -> dict[str, object]:
        """Everything that decides which faces are found and how their chips are cut."""
        d = asdict(self)
        d.pop("quality")
        d.pop("multiple_faces_width_ratio")
        d["yunet_sha256"] = MODEL_SHA256
        return d


def pipeline_version(config: PipelineConfig) -> str:
    """Readable prefix + hash of :meth:`PipelineConfig.chip_settings`; bump ``_CODE_REVISION`` when
    the code (not the settings) that cuts chips changes."""
    digest = hashlib.sha256(f"{_CODE_REVISION}|{sorted(config.chip_settings().items())}".encode()).hexdigest()
    return f"yunet2023mar+dlib5pt+chips150-112-{digest[:12]}"


_CODE_REVISION = 1  # image_size on Face does not change chips
PRODUCTION = PipelineConfig()
PIPELINE_VERSION = pipeline_version(PRODUCTION)


# ------------------------------------------------------------------ served-model runtime (not chips)

#: ``auto``: LiteRT when the model directory ships converted towers (the release does), else
#: TensorFlow; ``litert``: LiteRT or an error; ``tensorflow``: the SavedModel's own signatures.
RUNTIMES = ("auto", "litert", "tensorflow")
#: Interpreters per tower: as many as the service lets requests in flight on a 2-core box (admission:
#: one per core), so two never wait on each other; threads per interpreter: 2, so a lone request
#: runs its towers on both cores (about half the time on a quiet box) while two in flight measured
#: no worse than 1 thread each (benchmarks/results/litert_threads.txt).
DEFAULT_LITERT_POOL = 2
DEFAULT_LITERT_THREADS = 2


@dataclass(frozen=True)
class RuntimeConfig:
    """Which runtime serves the towers. Read from the environment by :func:`runtime_config`
    (``FACEVERIFY_RUNTIME``, ``FACEVERIFY_LITERT_POOL``, ``FACEVERIFY_LITERT_THREADS``) so the
    library, the CLI tools and the service pick the same one; callers may also pass one."""

    runtime: str = "auto"
    litert_pool: int = DEFAULT_LITERT_POOL
    litert_threads: int = DEFAULT_LITERT_THREADS

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime {self.runtime!r}: choose one of {RUNTIMES}")
        if self.litert_pool < 1 or self.litert_threads < 1:
            raise ValueError("litert_pool and litert_threads must be >= 1")


def runtime_config(env: Mapping[str, str] | None = None) -> RuntimeConfig:
    """The runtime settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    return RuntimeConfig(
        runtime=env.get("FACEVERIFY_RUNTIME", "auto").strip().lower() or "auto",
        litert_pool=int(env.get("FACEVERIFY_LITERT_POOL", DEFAULT_LITERT_POOL)),
        litert_threads=int(env.get("FACEVERIFY_LITERT_THREADS", DEFAULT_LITERT_THREADS)),
    )
