"""Service settings: one pydantic-settings class, every field overridable as `FACEVERIFY_<NAME>`.

Kept in one place so the CLI, the app, the migrations and the tests agree on where the database,
the image store and the model live, and on the input limits that protect the service.
"""

from __future__ import annotations

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
    warm_up: bool = Field(
        default=True, description="Run one inference on a built-in image before /ready turns ready."
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Bind address of the Prometheus /metrics listener (not the API's)."
    )
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Port of the /metrics listener; 0: none (the image sets 9464)."
    )

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
