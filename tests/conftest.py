"""Shared fixtures: isolated file storage, one user per role, the real XA samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from cagvlm_site.roles import SENIOR_GROUP, Role

REPO_ROOT = Path(__file__).resolve().parent.parent
XA_FIXTURES = Path(os.environ.get("CAGVLM_XA_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures" / "xa"))


@pytest.fixture(autouse=True)
def test_settings(settings) -> None:
    """Pages name their CSS with {% static %}; the deployment's manifest storage only knows
    the names after collectstatic, which a test run does not do. The fast hasher keeps the
    role users each test creates from costing seconds of deliberate PBKDF2 slowness."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def media_root(tmp_path: Path, settings) -> Path:
    """Every test writes its files into its own folder."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def xa_dir() -> Path:
    """The real angiography samples in ../shared/fixtures/xa.

    Skipped where the folder is absent, except in CI (CAGVLM_REQUIRE_FIXTURES=1), where a
    missing folder fails the test instead of silently skipping it.
    """
    if not XA_FIXTURES.is_dir():
        message = f"real XA samples not found at {XA_FIXTURES}"
        if os.environ.get("CAGVLM_REQUIRE_FIXTURES") == "1":
            pytest.fail(message + " (CAGVLM_REQUIRE_FIXTURES=1)")
        pytest.skip(message)
    return XA_FIXTURES


def visit_as(client: Client, users_by_role: dict[str, User | None], visitor: str) -> Client:
    """The test client, logged in as the given kind of visitor (or anonymous)."""
    user = users_by_role[visitor]
    if user is not None:
        client.force_login(user)
    return client


def make_user(username: str, *roles: Role) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username)
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role.value)[0])
    return user


@pytest.fixture
def physician(db) -> User:
    return make_user("dr_physician", Role.PHYSICIAN)


@pytest.fixture
def other_physician(db) -> User:
    return make_user("dr_other_physician", Role.PHYSICIAN)


@pytest.fixture
def cardiologist(db) -> User:
    return make_user("dr_cardiologist", Role.CARDIOLOGIST)


@pytest.fixture
def admin_user(db) -> User:
    return make_user("lab_admin", Role.ADMIN)


@pytest.fixture
def roleless_user(db) -> User:
    """Authenticated, but holding no role: must be refused everywhere."""
    return make_user("no_role")


@pytest.fixture
def users_by_role(physician, cardiologist, admin_user, roleless_user) -> dict[str, User | None]:
    """Every kind of visitor, anonymous included, for per-role access tests."""
    return {
        "anonymous": None,
        "no_role": roleless_user,
        "physician": physician,
        "cardiologist": cardiologist,
        "admin": admin_user,
    }


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory) -> None:
    """SQLite tests run on a database file, not Django's shared-cache in-memory database.

    Threads of the concurrency tests each open their own connection; shared-cache memory
    databases lock whole tables and fail at once ("database table is locked") instead of
    waiting, which is not how the file database of a deployment behaves. A file in this run's
    own temporary folder keeps parallel runs apart.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("database") / "test.sqlite3")


@pytest.fixture
def senior_physician(db) -> User:
    """A physician in the "senior" group: adjudicates disputed frames."""
    user = make_user("dr_senior", Role.PHYSICIAN)
    user.groups.add(Group.objects.get_or_create(name=SENIOR_GROUP)[0])
    return user
