"""Configuration: one settings class, read from `MUSRENBANG_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "musrenbang-development-secret-change-me"  # noqa: S105 - refused outside development
DEV_APP_DB_PASSWORD = "musrenbang_app"  # noqa: S105 - refused outside development


class Settings(BaseSettings):
    """Every setting of the system; defaults suit a developer's machine."""

    model_config = SettingsConfigDict(env_prefix="MUSRENBANG_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    home: Path = Path(".musrenbang")

    # PostgreSQL. Unset: the embedded server under `home`. The URL names the owner
    # role, which runs migrations; the application itself connects as `app_db_user`,
    # which may only INSERT and SELECT on the event log.
    database_url: str | None = None
    app_db_user: str = "musrenbang_app"
    app_db_password: str = DEV_APP_DB_PASSWORD
    database_name: str = "musrenbang"

    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_task_queue: str = "musrenbang"
    temporal_port: int = 7233
    temporal_ui_port: int = 8233

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    jwt_secret: str = DEV_JWT_SECRET
    jwks_url: str | None = None
    token_max_hours: int = 24  # tokens living longer (or without `exp`) are refused
    webhook_url: str | None = None

    # The key that signs the log's checkpoints (a signer key in Go's note format, from
    # `musrenbang audit keygen NAME`): the secret itself, or a file holding it. Never
    # stored in PostgreSQL. `musrenbang up` makes one under `home` when neither is set.
    log_signing_key: SecretStr | None = None
    log_signing_key_file: Path | None = None
    checkpoint_interval_minutes: int = 10  # the schedule's checkpoints while the log grows

    # A Bappeda's own region profiles (`<region>.json`) and sub-kegiatan catalogues
    # (`nomenclature/<name>.json`), over the ones shipped in the package.
    profiles_dir: Path | None = None

    log_format: Literal["console", "json"] | None = None
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.environment == "production":
            if self.jwt_secret in ("", DEV_JWT_SECRET) and not self.jwks_url:
                raise ValueError("MUSRENBANG_JWT_SECRET must be set in production")
            if self.app_db_password == DEV_APP_DB_PASSWORD:
                raise ValueError("MUSRENBANG_APP_DB_PASSWORD must be set in production")
        return self

    @property
    def temporal_target(self) -> str:
        """The Temporal frontend: the configured one, else the embedded dev server."""
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def resolved_log_format(self) -> Literal["console", "json"]:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.environment == "production" else "console"


@lru_cache
def get_settings() -> Settings:
    return Settings()
