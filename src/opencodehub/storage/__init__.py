"""Object storage: one `StorageAdapter` interface, adapters for local disk, S3, Azure Blob and
Google Drive, chosen by `OCH_STORAGE_BACKEND` through `build_storage(settings)`.

Adapter methods are synchronous and block on I/O: call them from a thread
(`asyncio.to_thread`, or a FastAPI `def` route). See `storage.base` for the contract.
"""

from opencodehub.storage.base import (
    InvalidKey,
    InvalidRange,
    ObjectInfo,
    ObjectNotFound,
    ObjectStream,
    SignedURL,
    StorageAdapter,
    StorageConfigError,
    StorageError,
    validate_key,
    validate_prefix,
)
from opencodehub.storage.factory import app_url_signer, build_storage, local_storage_root
from opencodehub.storage.signing import AppURLSigner

__all__ = [
    "AppURLSigner",
    "InvalidKey",
    "InvalidRange",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStream",
    "SignedURL",
    "StorageAdapter",
    "StorageConfigError",
    "StorageError",
    "app_url_signer",
    "build_storage",
    "local_storage_root",
    "validate_key",
    "validate_prefix",
]
