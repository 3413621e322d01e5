"""Settings: `OCH_` environment variables, then an optional `opencodehub.toml`, then defaults.

Every process role reads the same `Settings`; nothing else in the package reads the environment.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE_ENV = "OCH_CONFIG_FILE"
DEFAULT_CONFIG_FILE = "opencodehub.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OCH_",
        extra="ignore",
        toml_file=DEFAULT_CONFIG_FILE,
    )

    data_dir: Path = Path("data")
    database_url: str = ""
    redis_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 4321
    ssh_host: str = "0.0.0.0"  # noqa: S104 - the SSH role listens on every interface by default
    ssh_port: int = 2222
    ssh_enabled: bool = True
    base_url: str = ""
    # The URL the git hooks use to reach the app; defaults to the loopback HTTP listener.
    internal_url: str = ""
    secret_key: SecretStr = SecretStr("")
    allow_signup: bool = True
    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"
    workers: int = 1

    # Sessions and throttling
    session_max_age_days: int = 30
    login_max_attempts: int = 10
    login_window_seconds: int = 300

    # API rate limit (requests per hour per user / per IP for anonymous callers)
    rate_limit_authenticated: int = 5000
    rate_limit_anonymous: int = 60

    # Storage (adapters arrive with the storage issue; the names are part of the contract now)
    storage_backend: Literal["local", "s3", "azure", "gdrive"] = "local"
    storage_local_path: Path | None = None
    storage_s3_endpoint: str = ""
    storage_s3_region: str = ""
    storage_s3_bucket: str = ""
    storage_s3_access_key: str = ""
    storage_s3_secret_key: SecretStr = SecretStr("")
    storage_s3_path_style: bool = False
    storage_azure_connection_string: SecretStr = SecretStr("")
    storage_azure_container: str = ""
    storage_gdrive_credentials_file: str = ""
    storage_gdrive_folder_id: str = ""
    storage_gdrive_api_url: str = "https://www.googleapis.com"
    storage_chunk_size: int = 8 * 1024 * 1024  # bytes per uploaded part/block/chunk
    storage_upload_concurrency: int = 4  # parts in flight per S3/Azure upload

    # Avatars: a Gravatar-compatible base URL (Gravatar, Libravatar) to look up; "" is off
    avatar_gravatar: str = ""

    # Git
    git_binary: str = "git"
    git_max_push_bytes: int = Field(default=0, description="0 means no limit")
    lfs_max_object_size: int = 5 * 1024**3  # bytes; larger LFS objects are refused (413)
    # Send LFS transfers through the app even when the storage backend can sign URLs (a bucket
    # clients cannot reach, or one network path to audit); the app checks SHA-256 on the way.
    lfs_proxy_transfers: bool = False

    # Background jobs (CI scheduling, merge checks, clean-up): run inside the app in embedded
    # mode; turn off on app nodes when `opencodehub worker` processes run them instead.
    run_background_jobs: bool = True

    # Email (notifications); "" host means no email is sent
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = "OpenCodeHub <noreply@localhost>"
    smtp_starttls: bool = True

    # Account security
    require_2fa_for_admins: bool = False

    # Actions
    actions_enabled: bool = True
    actions_max_jobs_per_run: int = 256

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE)
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    # Derived values -------------------------------------------------------------------------

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'opencodehub.db'}"

    @property
    def effective_base_url(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host  # noqa: S104
        return f"http://{host}:{self.http_port}"

    @property
    def effective_internal_url(self) -> str:
        if self.internal_url:
            return self.internal_url.rstrip("/")
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ssh_clone_host(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.effective_base_url).hostname or "localhost"

    @property
    def secure_cookies(self) -> bool:
        return self.effective_base_url.startswith("https://")

    @property
    def secret(self) -> bytes:
        """The key every HMAC, signature and encryption in OpenCodeHub derives from."""
        value = self.secret_key.get_secret_value()
        if value:
            return value.encode()
        return _load_or_create_secret(self.data_dir)

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain values, secrets replaced by a mask."""
        shown: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                shown[name] = "********" if value.get_secret_value() else ""
            elif name == "database_url" or name == "redis_url":
                shown[name] = _mask_url_password(str(value))
            else:
                shown[name] = str(value) if isinstance(value, Path) else value
        shown["database_url"] = _mask_url_password(self.effective_database_url)
        return shown


def _mask_url_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":********@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


_secret_cache: dict[Path, bytes] = {}


def _load_or_create_secret(data_dir: Path) -> bytes:
    if data_dir in _secret_cache:
        return _secret_cache[data_dir]
    path = data_dir / "secret.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        candidate = secrets.token_hex(32)
        # O_EXCL so two processes starting together agree on one key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(candidate)
    value = path.read_text().strip().encode()
    _secret_cache[data_dir] = value
    return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
