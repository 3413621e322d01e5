"""`build_storage(settings)`: the adapter `OCH_STORAGE_BACKEND` names, configured from settings."""

from __future__ import annotations

from pathlib import Path

from opencodehub.config import Settings
from opencodehub.storage.base import StorageAdapter, StorageConfigError
from opencodehub.storage.signing import AppURLSigner


def local_storage_root(settings: Settings) -> Path:
    """`OCH_STORAGE_LOCAL_PATH`, or `{data}/storage`: never the data dir itself, whose other
    files (the database, the secret key, repositories) no key may reach."""
    return settings.storage_local_path or settings.data_dir / "storage"


def app_url_signer(settings: Settings) -> AppURLSigner:
    return AppURLSigner(settings.secret, settings.effective_base_url)


def build_storage(settings: Settings) -> StorageAdapter:
    backend = settings.storage_backend
    chunk_size = settings.storage_chunk_size
    concurrency = settings.storage_upload_concurrency
    if chunk_size < 256 * 1024:
        raise StorageConfigError("OCH_STORAGE_CHUNK_SIZE must be at least 262144 (256 KiB)")
    if concurrency < 1:
        raise StorageConfigError("OCH_STORAGE_UPLOAD_CONCURRENCY must be at least 1")
    if backend == "local":
        from opencodehub.storage.local import LocalStorage

        return LocalStorage(local_storage_root(settings), signer=app_url_signer(settings))
    if backend == "s3":
        from opencodehub.storage.s3 import S3Storage

        _require(settings, "storage_s3_bucket")
        return S3Storage(
            settings.storage_s3_bucket,
            endpoint=settings.storage_s3_endpoint,
            region=settings.storage_s3_region,
            access_key=settings.storage_s3_access_key,
            secret_key=settings.storage_s3_secret_key.get_secret_value(),
            path_style=settings.storage_s3_path_style,
            part_size=chunk_size,
            concurrency=concurrency,
        )
    if backend == "azure":
        from opencodehub.storage.azure import AzureBlobStorage

        _require(settings, "storage_azure_connection_string", "storage_azure_container")
        return AzureBlobStorage(
            settings.storage_azure_connection_string.get_secret_value(),
            settings.storage_azure_container,
            block_size=chunk_size,
            concurrency=concurrency,
        )
    if backend == "gdrive":
        from opencodehub.storage.gdrive import GoogleDriveStorage

        _require(settings, "storage_gdrive_credentials_file", "storage_gdrive_folder_id")
        return GoogleDriveStorage(
            settings.storage_gdrive_credentials_file,
            settings.storage_gdrive_folder_id,
            api_url=settings.storage_gdrive_api_url,
            chunk_size=chunk_size,
        )
    raise StorageConfigError(f"unknown storage backend {backend!r}")


def _require(settings: Settings, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if not value:
            raise StorageConfigError(
                f"OCH_STORAGE_BACKEND={settings.storage_backend} needs OCH_{name.upper()}"
            )
