"""Service settings: one pydantic-settings class, every field overridable as `FACEVERIFY_<NAME>`.

Kept in one place so the CLI, the app, the migrations and the tests agree on where the database,
the image store and the model live, and on the input limits that protect the service.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from faceverify.config import DEFAULT_LITERT_POOL, DEFAULT_LITERT_THREADS, RuntimeConfig

MB = 1024 * 1024


def normalise_database_url(url: str) -> str:
    """Make a plain `postgresql://` URL use psycopg 3 (SQLAlchemy would otherwise pick psycopg2).

    Deployment tools hand out `postgresql://` or `postgres://` URLs; we ship only psycopg 3.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class Settings(BaseSettings):
    """Runtime configuration of the verification service (environment prefix `FACEVERIFY_`)."""

    model_config = SettingsConfigDict(env_prefix="FACEVERIFY_", extra="ignore", protected_namespaces=())

    data_dir: Path = Field(
        default=Path("./data"), description="Image store and the default SQLite database."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<DATA_DIR>/faceverify.db. postgresql:// works.",
    )
    model_dir: Path = Field(
        default=Path("./models/release"), description="Served SavedModel + model_card.json."
    )
    max_upload_bytes: int = Field(
        default=10 * MB, gt=0, description="Largest accepted image file in bytes (413 above)."
    )
    max_pixels: int = Field(
        default=40_000_000, gt=0, description="Largest decoded image in pixels (decompression bombs)."
    )
    max_images_per_enroll: int = Field(default=64, gt=0, description="Most files in one POST /enroll.")
    max_decoded_side: int = Field(
        default=4096,
        ge=1280,
        description="A photo (enrol, verify) whose longer side is above this is shrunk to it right after "
        "decoding (JPEG: decoded at a reduced scale): bounds the memory one photo holds to ~50 MB. "
        "The detector searches at most 1280 px anyway; the chips are cut from this resolution.",
    )
    max_request_pixels: int = Field(
        default=250_000_000,
        gt=0,
        description="Decoded-pixel budget of one POST /enroll (sum of the photos' width x height, read "
        "from their headers before any is decoded): 413 pixel_budget_exceeded above. Bounds the CPU "
        "one request may spend decoding.",
    )
    migrate_on_startup: bool = Field(
        default=True, description="Bring the schema to head when the app starts."
    )
    liveness_required: bool = Field(
        default=False, description="Refuse a plain single-image /verify (422 liveness_required)."
    )
    liveness_challenge_ttl_s: int = Field(default=30, gt=0, description="Lifetime of a liveness challenge.")
    liveness_challenges_per_window: int = Field(
        default=6, ge=0, description="Most liveness challenges one user may ask for per window (0: no limit)."
    )
    liveness_challenge_window_s: int = Field(
        default=300, gt=0, description="Window of liveness_challenges_per_window, seconds."
    )
    liveness_challenge_retention_s: int = Field(
        default=3600, ge=0, description="Expired challenges are deleted this long after expiry (sweep)."
    )
    liveness_burst_retention_s: int = Field(
        default=30 * 86400,
        ge=0,
        description="Frame hashes of judged bursts (replay refusal) are kept this long, then swept.",
    )
    liveness_sweep_interval_s: float = Field(
        default=60.0, ge=0, description="Sweep of challenges and burst hashes at most this often, on issue."
    )
    liveness_move_closer: bool = Field(default=False, description="Challenges may also ask to move closer.")
    liveness_min_frames: int = Field(default=8, gt=1, description="Fewest frames in a liveness burst.")
    liveness_max_frames: int = Field(default=48, gt=1, description="Most frames in a liveness burst.")
    liveness_max_total_bytes: int = Field(
        default=24 * MB, gt=0, description="Largest liveness burst (all frames together) in bytes."
    )
    liveness_max_pixels: int = Field(
        default=100_000_000,
        gt=0,
        description="Decoded-pixel budget of one liveness burst (all frames, from their headers, before "
        "any is decoded; 48 full-HD frames fit): 413 pixel_budget_exceeded above.",
    )
    liveness_max_side: int = Field(
        default=1280,
        ge=320,
        description="A liveness frame whose longer side is above this is shrunk to it right after "
        "decoding (the detector works on at most 1280 px): a burst keeps at most "
        "liveness_max_frames frames of this size.",
    )
    tf_threads: int = Field(
        default=0, ge=0, description="TensorFlow intra/inter-op threads; 0 lets TF decide."
    )
    runtime: Literal["auto", "litert", "tensorflow"] = Field(
        default="auto",
        description="Runtime of the towers: auto = LiteRT when the model directory ships its converted "
        "towers (the release does), else TensorFlow; tensorflow = the SavedModel's own signatures.",
    )
    litert_pool: int = Field(
        default=DEFAULT_LITERT_POOL, ge=1, description="LiteRT interpreters per tower (requests in flight)."
    )
    litert_threads: int = Field(
        default=DEFAULT_LITERT_THREADS, ge=1, description="XNNPACK threads per LiteRT interpreter."
    )
    # --- operations (README "Deployment"): warm start, Prometheus metrics --------------------------
    warm_up: bool = Field(
        default=True, description="Run one inference on a built-in image before /ready turns ready."
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Bind address of the Prometheus /metrics listener (not the API's)."
    )
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Port of the /metrics listener; 0: none (the image sets 9464)."
    )

    # ----------------------------------------------------------- storage (README "Encryption and storage")
    encryption_key: SecretStr | None = Field(
        default=None,
        description="Data key for stored photos and embeddings (AES-256-GCM): base64 of 32 bytes. "
        "Unset: a key file DATA_DIR/encryption-keys.json (0600) is created on first start and used.",
    )
    encryption_old_keys: SecretStr = Field(
        default=SecretStr(""),
        description="Comma-separated base64 keys still needed to READ data sealed before a rotation "
        "(with ENCRYPTION_KEY set to the new key, until `faceverify encryption rotate` has run).",
    )
    store_photos: bool = Field(
        default=True,
        description="Keep the enrolled photos (encrypted). False = embeddings only: no photo is ever "
        "written, but a model change then needs every user to re-enrol (reembed cannot work).",
    )
    max_images_per_user: int = Field(
        default=100, gt=0, description="Most stored images per user (409 image_quota_exceeded above)."
    )
    max_bytes_per_user: int = Field(
        default=100 * MB,
        gt=0,
        description="Most uploaded photo bytes stored per user (413 byte_quota_exceeded above).",
    )

    # --- security (issue 9): keys, lockout, rate limit, audit, web hardening -------------------
    bootstrap_admin_key: bool = Field(
        default=True,
        description="On start with no API key in the database, create an admin key and write it to "
        "DATA_DIR/admin-api-key (mode 0600) so `make serve` works with no set-up.",
    )
    admin_api_key: SecretStr | None = Field(
        default=None,
        description="Secret of the first admin key (from `faceverify keys new-secret`), used instead of a "
        "generated one when the database has no key; no key file is written then.",
    )
    lockout_max_failures: int = Field(
        default=5, gt=0, description="Failed verifies of one user_id within the window that lock it."
    )
    lockout_window_s: int = Field(
        default=180, gt=0, description="Window (seconds) in which failed verifies are counted."
    )
    lockout_base_s: int = Field(
        default=60, gt=0, description="First lock period (seconds); doubles on each repeat lock."
    )
    lockout_max_s: int = Field(
        default=3600, gt=0, description="Cap on the lock period (seconds)."
    )
    rate_limit_per_minute: int = Field(
        default=600, ge=0, description="Requests per minute per API key, per process (0: no limit)."
    )
    enrol_match_far: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="False-accept level a new photo of an EXISTING user must verify at before an "
        "enroll-only key may add it (unset: the model card's strictest level).",
    )
    auth_refused_ttl_s: float = Field(
        default=10.0,
        ge=0,
        description="How long a refused (unknown or revoked) API key is remembered, so presenting it "
        "again costs a hash and a cache lookup, not a database query. Accepted keys are never cached: "
        "a revocation holds on the next request.",
    )
    expose_scores: bool = Field(
        default=False,
        description="Show votes, vote_ratio and best_similarity to every key (else to admin keys only): "
        "a raw score is a gradient an attacker can climb.",
    )
    audit_retention_days: int = Field(
        default=0, ge=0, description="`faceverify audit prune` drops entries older than this (0: keep all)."
    )
    docs_enabled: bool = Field(
        default=False, description="Serve /docs, /redoc and /openapi.json (off: 404)."
    )
    ui_enabled: bool = Field(
        default=True,
        description="Serve the browser UI (kiosk, compare, console) under /ui/; its pages hold no data "
        "and every call they make needs an API key.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="CORS allow-list of origins; empty: no CORS headers at all."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks of reverse proxies whose X-Forwarded-For is believed (e.g. "
        "[\"10.0.0.0/8\"]); empty: the audit stores the peer address and ignores forwarded headers.",
    )
    trusted_hosts: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Host header allow-list (e.g. [\"faceverify.lan\", \"127.0.0.1\"]) against DNS "
        "rebinding; [\"*\"] accepts any host.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError: a clear settings error at start
        return value

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies]

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin-api-key"

    # --- Robustness (faults and load); see README "Robustness". -------------------------------------
    db_connect_timeout_s: int = Field(
        default=3, ge=1, description="PostgreSQL connect timeout (libpq connect_timeout), seconds."
    )
    db_statement_timeout_s: float = Field(
        default=4.0, gt=0, description="Server-side statement_timeout on PostgreSQL, seconds."
    )
    db_deadline_s: float = Field(
        default=5.0,
        gt=0,
        description="Client-side deadline on each PostgreSQL round trip; a frozen server (whose kernel "
        "still ACKs) is given up on after this and the request gets 503 database_unavailable.",
    )
    db_pool_size: int = Field(default=5, ge=1, description="PostgreSQL connections kept open.")
    db_max_overflow: int = Field(default=5, ge=0, description="Extra PostgreSQL connections under load.")
    db_pool_timeout_s: float = Field(
        default=2.0, gt=0, description="Longest wait for a pooled connection before 503 (stuck pool)."
    )
    sqlite_busy_timeout_s: float = Field(
        default=8.0,
        gt=0,
        description="How long SQLite waits on another writer's lock before 503 (enrolments of one "
        "user serialise on it, so it must outlast one enrolment).",
    )
    db_retry_after_s: int = Field(
        default=2, ge=1, description="Retry-After sent with 503 database_unavailable."
    )
    ready_timeout_s: float = Field(
        default=2.0, gt=0, description="GET /ready reports the database as unreachable after this."
    )
    admission_max_active: int = Field(
        default=0,
        ge=0,
        description="Requests allowed in the CPU-heavy routes at once; 0 means the CPU core count.",
    )
    admission_max_queued: int = Field(
        default=0, ge=0, description="Requests that may wait for a slot; 0 means the CPU core count."
    )
    admission_max_wait_s: float = Field(
        default=0.5, ge=0, description="Longest wait for a slot before 503 overloaded."
    )
    admission_retry_after_s: int = Field(
        default=1, ge=1, description="Retry-After sent with 503 overloaded."
    )
    admission_paths: list[str] = Field(
        default=["/verify", "/enroll", "/liveness", "/faces", "/compare"],
        description="Path prefixes that go through admission control (the CPU-heavy routes).",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection must send a complete request head within this many seconds of "
        "opening (or of its previous response), else it is closed (slow-loris).",
    )
    body_idle_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest pause while a request body streams in (408 after)."
    )
    body_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest time to receive a whole request body (408 after)."
    )
    keep_alive_s: int = Field(default=5, ge=1, description="Idle keep-alive connections close after this.")
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Most open connections (fd exhaustion); above it the connection waiting longest "
        "without a request is closed to admit the new one, or the new one if all are busy.",
    )
    graceful_timeout_s: int = Field(
        default=8,
        ge=1,
        description="On SIGTERM, how long in-flight requests may take to finish (under Docker's "
        "default 10 s stop timeout, after which it sends SIGKILL).",
    )
    log_format: str = Field(
        default="json", pattern="^(json|text)$", description="json (one object per line) or text."
    )

    def runtime_config(self) -> RuntimeConfig:
        """The towers' runtime settings in faceverify's own type (the library reads the same
        FACEVERIFY_RUNTIME / _LITERT_* names when used on its own)."""
        return RuntimeConfig(self.runtime, self.litert_pool, self.litert_threads)

    @property
    def admission_active(self) -> int:
        return self.admission_max_active or (os.cpu_count() or 1)

    @property
    def admission_queued(self) -> int:
        return self.admission_max_queued or (os.cpu_count() or 1)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'faceverify.db').resolve()}"

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"

    def max_request_bytes(self, path: str) -> int:
        """Cap on a whole request body, enforced while streaming (before it reaches memory or disk).

        /verify carries one image or a liveness burst; /enroll at most `max_images_per_enroll` photos
        and at most a user's byte quota; /faces one photo and /compare two (the browser UI's frame
        check and compare page); anything else is small.
        """
        if path.rstrip("/").endswith("/verify"):
            return max(self.max_upload_bytes, self.liveness_max_total_bytes) + MB
        if path.rstrip("/").endswith("/enroll"):
            # More than a user's byte quota can never be stored: no reason to hold it in memory.
            return min(self.max_upload_bytes * self.max_images_per_enroll, self.max_bytes_per_user) + MB
        if path.rstrip("/").endswith("/faces"):
            return self.max_upload_bytes + MB
        if path.rstrip("/").endswith("/compare"):
            return 2 * self.max_upload_bytes + MB
        return MB

