"""Service settings: one pydantic-settings class, every field overridable as `FACEVERIFY_<NAME>`.

Kept in one place so the CLI, the app, the migrations and the tests agree on where the database,
the image store and the model live, and on the input limits that protect the service.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    migrate_on_startup: bool = Field(
        default=True, description="Bring the schema to head when the app starts."
    )
    tf_threads: int = Field(
        default=0, ge=0, description="TensorFlow intra/inter-op threads; 0 lets TF decide."
    )

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
        default=2.0, gt=0, description="How long SQLite waits on another writer's lock before 503."
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
        default=["/verify", "/enroll", "/liveness"],
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
        default=1000, ge=1, description="Open connections beyond this are closed at once (fd exhaustion)."
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

        /verify carries one image; /enroll at most `max_images_per_enroll`; anything else is small.
        """
        if path.rstrip("/").endswith("/verify"):
            return self.max_upload_bytes + MB
        if path.rstrip("/").endswith("/enroll"):
            return self.max_upload_bytes * self.max_images_per_enroll + MB
        return MB


def get_settings() -> Settings:
    return Settings()
