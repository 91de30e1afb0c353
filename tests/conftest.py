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


@pytest.fixture
def job_runners(monkeypatch, settings, tmp_path):
    """A job-runner registry of the test's own, empty (the product's runners are not loaded:
    register test runners with ``inference.jobs.register_runner``), and a VAR_DIR of its own
    for the jobs' checkpoint folders. Returns the ``inference.jobs`` module."""
    from inference import jobs

    # The product's runner modules register at import (the URLconf imports one): import them
    # now, into the real registry, so that they never land in the test's own.
    jobs.load_runners()
    monkeypatch.setattr(jobs, "_RUNNERS", {})
    monkeypatch.setattr(jobs, "RUNNER_MODULES", [])
    settings.VAR_DIR = tmp_path / "var"
    return jobs


@pytest.fixture(scope="session")
def tiny_keyframe_weights() -> tuple[bytes, dict]:
    """A randomly initialised convnext_atto at 32 px (seeded) as safetensors bytes, and its
    model config: built once per run, the way the trainer saves a model."""
    import torch

    from inference.ml.keyframe.config import KeyframeModelConfig
    from inference.ml.keyframe.model import build_model, cpu_state, weights_to_safetensors

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = KeyframeModelConfig(arch="convnext_atto", image_size=32)
    model = build_model(config)
    return weights_to_safetensors(cpu_state(model), config), config.model_dump(mode="json")


@pytest.fixture
def registered_keyframe_model(db, tiny_keyframe_weights, monkeypatch):
    """A tiny key-frame CNN registered through the model registry and activated: the active
    ModelVersion, whose weights ``registry.load_predictor`` loads from storage. Predictors
    built in the test use one thread (the test machine is shared)."""
    import torch

    from inference.ml.keyframe.runtime import THREADS_ENV
    from inference.models import ModelKind
    from inference.registry import activate, register_model_version
    from tests.factories import DatasetSnapshotFactory

    monkeypatch.setenv(THREADS_ENV, "1")
    torch.set_num_threads(1)
    weights, model_config = tiny_keyframe_weights
    version = register_model_version(
        kind=ModelKind.KEYFRAME_CNN,
        architecture=model_config["arch"],
        config={"model": model_config, "training": {"arch": model_config["arch"], "image_size": 32}},
        weights=weights,
        snapshot=DatasetSnapshotFactory(),
        metrics={},
    )
    return activate(version, None)
