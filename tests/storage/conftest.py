"""Fixtures for the storage contract suite: one adapter per backend on a real peer.

S3 runs against `moto_server`, Azure against Azurite, both started once per session on free
loopback ports; Google Drive runs against `gdrive_standin`, a local server that stands in for
Drive (no real Drive can run here). None of this touches the database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from opencodehub.config import Settings
from opencodehub.storage import AppURLSigner, StorageAdapter
from opencodehub.storage.azure import AzureBlobStorage
from opencodehub.storage.gdrive import GoogleDriveStorage
from opencodehub.storage.local import LocalStorage
from opencodehub.storage.s3 import S3Storage
from tests.conftest import free_port
from tests.storage.gdrive_standin import DriveStandIn

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ["local", "s3", "azure", "gdrive"]
SECRET = b"storage-test-secret-0123456789abcdef"
BASE_URL = "http://testserver"
# Azurite's documented development account.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
MiB = 1024 * 1024


def _wait_for_http(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer on {url}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = Path(sys.executable).with_name("moto_server")
    assert binary.exists(), "moto_server is missing: pip install -e '.[test]'"
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(endpoint, process, "moto_server")
        yield endpoint
    finally:
        _stop(process)
        log.close()


def azurite_binary() -> str:
    found = shutil.which("azurite-blob")
    local = REPO / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if found:
        return found
    assert local.exists(), "Azurite is missing: run scripts/install-test-deps.sh"
    return str(local)


@pytest.fixture(scope="session")
def azurite_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("azurite")
    log = (workdir / "azurite.log").open("wb")
    process = subprocess.Popen(
        [
            azurite_binary(),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(workdir),
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            "--disableTelemetry",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "AZURITE_ACCOUNTS": ""},
    )
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    try:
        _wait_for_http(endpoint, process, "Azurite")
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
        )
    finally:
        _stop(process)
        log.close()


@dataclass
class DriveFixture:
    server: DriveStandIn
    credentials_file: Path


@pytest.fixture(scope="session")
def drive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriveFixture]:
    """The stand-in for Google Drive, and a service-account key file whose `token_uri` points
    at it (a real key file names https://oauth2.googleapis.com/token)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    email = "opencodehub@test-project.iam.gserviceaccount.com"
    server = DriveStandIn(public_key_pem=public_pem, client_email=email)
    server.start(free_port())
    credentials = tmp_path_factory.mktemp("gdrive") / "service-account.json"
    credentials.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "test-project",
                "private_key_id": "test-key",
                "private_key": private_pem,
                "client_email": email,
                "client_id": "1234567890",
                "token_uri": f"{server.base_url}/token",
            }
        )
    )
    try:
        yield DriveFixture(server, credentials)
    finally:
        server.stop()


@dataclass
class Case:
    """One adapter on a fresh namespace (directory, bucket, container or folder), the settings
    that describe the same place, and how much memory a 50 MB upload may take through it."""

    backend: str
    storage: StorageAdapter
    settings: Settings
    memory_bound: int
    namespace: str = ""


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        secret_key=SECRET.decode(),
        base_url=BASE_URL,
        _env_file=None,
        **values,  # type: ignore[arg-type]
    )


@pytest.fixture(params=BACKENDS)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    backend = request.param
    name = f"och-{uuid.uuid4().hex[:12]}"
    if backend == "local":
        root = tmp_path / "objects"
        storage: StorageAdapter = LocalStorage(root, signer=AppURLSigner(SECRET, BASE_URL))
        settings = _settings(tmp_path, storage_local_path=root)
        result = Case(backend, storage, settings, memory_bound=16 * MiB, namespace=str(root))
    elif backend == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        credentials = {"access_key": "testing", "secret_key": "testing"}
        storage = S3Storage(
            name,
            endpoint=endpoint,
            region="us-east-1",
            path_style=True,
            part_size=5 * MiB,
            concurrency=2,
            list_page_size=3,
            **credentials,
        )
        settings = _settings(
            tmp_path,
            storage_backend="s3",
            storage_s3_endpoint=endpoint,
            storage_s3_region="us-east-1",
            storage_s3_bucket=name,
            storage_s3_access_key="testing",
            storage_s3_secret_key="testing",
            storage_s3_path_style=True,
        )
        # Two 5 MiB parts in flight and the next one being filled (15 MiB), and botocore's
        # 1 MiB download chunks; a read-ahead part or a copy per part would cross the bound.
        result = Case(backend, storage, settings, memory_bound=20 * MiB, namespace=name)
    elif backend == "azure":
        connection = request.getfixturevalue("azurite_connection_string")
        storage = AzureBlobStorage(
            connection, name, block_size=2 * MiB, concurrency=2, list_page_size=3
        )
        settings = _settings(
            tmp_path,
            storage_backend="azure",
            storage_azure_connection_string=connection,
            storage_azure_container=name,
        )
        # Two 2 MiB blocks being staged, the next one being filled and joined (8 MiB), and the
        # 1 MiB reads of a download (one streaming Get Blob; measured 4.2 and 2.1 MiB).
        result = Case(backend, storage, settings, memory_bound=12 * MiB, namespace=name)
    else:
        drive: DriveFixture = request.getfixturevalue("drive")
        folder = drive.server.create_folder(name)
        storage = GoogleDriveStorage(
            str(drive.credentials_file),
            folder,
            api_url=drive.server.base_url,
            chunk_size=1 * MiB,
            list_page_size=3,
        )
        settings = _settings(
            tmp_path,
            storage_backend="gdrive",
            storage_gdrive_credentials_file=str(drive.credentials_file),
            storage_gdrive_folder_id=folder,
            storage_gdrive_api_url=drive.server.base_url,
        )
        # The stand-in runs in this process, so its HTTP server's receive buffers are measured
        # along with the adapter's two 1 MiB chunks.
        result = Case(backend, storage, settings, memory_bound=32 * MiB, namespace=folder)
    try:
        yield result
    finally:
        result.storage.close()
