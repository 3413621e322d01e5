"""JWT shape checks and key files, without a database."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opencodehub.accounts.jwt import cli, keys
from opencodehub.accounts.jwt.service import looks_like_jwt


def test_looks_like_jwt_is_strict() -> None:
    assert looks_like_jwt("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2ln")
    for value in (
        "och_" + "a" * 40,
        "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0",
        "eyJ.a.b.c",
        "eyJh bGci.x.y",
        "xeyJhbGciOiJFZERTQSJ9.eyJ.c2ln",
        "eyJ" + "a" * 9000 + ".b.c",
        "",
    ):
        assert not looks_like_jwt(value)


def test_keys_are_private_files_and_rotation_keeps_the_old_key(tmp_path: Path) -> None:
    ring = keys.keyring(tmp_path)
    directory = tmp_path / "jwt"
    pem = directory / f"{ring.current_kid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert pem.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert keys.keyring(tmp_path).current_kid == ring.current_kid  # stable across loads

    rotated = keys.rotate(tmp_path)
    assert rotated.current_kid != ring.current_kid
    assert set(rotated.public_keys) == {ring.current_kid, rotated.current_kid}
    jwks = rotated.jwks()["keys"]
    assert {item["kid"] for item in jwks} == set(rotated.public_keys)
    assert all(item["kty"] == "OKP" and item["crv"] == "Ed25519" for item in jwks)
    assert all("d" not in item for item in jwks)  # never the private part

    # Once the longest-lived token of the old key has expired, the old key goes.
    index = directory / keys.INDEX
    text = index.read_text().replace(
        str(rotated.retired_at[ring.current_kid]),
        str(int(time.time()) - keys.RETIRED_KEY_GRACE - 10),
    )
    index.write_text(text)
    assert set(keys.keyring(tmp_path).public_keys) == {rotated.current_kid}
    keys.rotate(tmp_path)
    assert not pem.exists()


def test_cli_rotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opencodehub.config import Settings

    settings = Settings(data_dir=tmp_path, _env_file=None)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    before = keys.keyring(tmp_path).current_kid
    result = CliRunner().invoke(cli.app, [])
    assert result.exit_code == 0, result.output
    after = keys.keyring(tmp_path).current_kid
    assert after != before
    assert f"current key: {after}" in result.output and before in result.output
