"""The settings helpers fail loudly on bad values and read secrets from files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from cagvlm_site import settings as site_settings

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("yes", True), ("off", False), ("", False)])
def test_env_bool(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("CAGVLM_TEST_FLAG", raw)
    assert site_settings.env_bool("CAGVLM_TEST_FLAG", False) is expected


def test_env_bool_refuses_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAGVLM_TEST_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="CAGVLM_TEST_FLAG must be a boolean"):
        site_settings.env_bool("CAGVLM_TEST_FLAG", False)


def test_env_int_refuses_nonsense_and_values_below_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAGVLM_TEST_INT", "many")
    with pytest.raises(ImproperlyConfigured, match="must be an integer"):
        site_settings.env_int("CAGVLM_TEST_INT", 3)
    monkeypatch.setenv("CAGVLM_TEST_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        site_settings.env_int("CAGVLM_TEST_INT", 3, minimum=1)


def test_secret_from_environment_file_or_generated_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CAGVLM_TEST_SECRET", raising=False)
    monkeypatch.delenv("CAGVLM_TEST_SECRET_FILE", raising=False)
    generated = tmp_path / "secret"
    first = site_settings.env_secret("CAGVLM_TEST_SECRET", generated_file=generated)
    assert site_settings.env_secret("CAGVLM_TEST_SECRET", generated_file=generated) == first
    assert oct(generated.stat().st_mode & 0o777) == "0o600"

    secret_file = tmp_path / "mounted"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv("CAGVLM_TEST_SECRET_FILE", str(secret_file))
    assert site_settings.env_secret("CAGVLM_TEST_SECRET", generated_file=generated) == "from-a-file"

    monkeypatch.setenv("CAGVLM_TEST_SECRET", "from-env")
    assert site_settings.env_secret("CAGVLM_TEST_SECRET", generated_file=generated) == "from-env"


def test_missing_secret_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CAGVLM_TEST_SECRET", raising=False)
    monkeypatch.setenv("CAGVLM_TEST_SECRET_FILE", str(tmp_path / "absent"))
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        site_settings.env_secret("CAGVLM_TEST_SECRET")


def test_bad_database_url_stops_start_up(tmp_path: Path) -> None:
    """A deployment with a mistyped DATABASE_URL must not start on some other database."""
    env = {**os.environ, "DATABASE_URL": "postgress//nowhere", "CAGVLM_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_single_machine_default_is_sqlite_in_wal_mode(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["CAGVLM_VAR_DIR"] = str(tmp_path)
    probe = (
        "from django.db import connection; c = connection.cursor(); c.execute('PRAGMA journal_mode'); "
        "print(connection.vendor, c.fetchone()[0])"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "shell", "-c", probe],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines()[-1].split() == ["sqlite", "wal"]
    assert (tmp_path / "cagvlm.sqlite3").exists()
