"""The model registry: numbered versions with stored weights, one active per kind, activation
history and rollback."""

from __future__ import annotations

import hashlib

import pytest
from django.db import IntegrityError, transaction

from inference.models import ActivationAction, ModelActivation, ModelKind, ModelVersion
from inference.registry import (
    RegistryError,
    WeightsIntegrityError,
    activate,
    active_version,
    load_predictor,
    read_weights,
    register_model_version,
    rollback,
    rollback_target,
)
from tests.factories import DatasetSnapshotFactory

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"plot"


def register(number: int, user=None, **overrides) -> ModelVersion:
    arguments = {
        "kind": ModelKind.KEYFRAME_CNN,
        "architecture": "convnext_atto",
        "config": {"model": {"arch": "convnext_atto", "image_size": 32}, "training": {"epochs": 2}},
        "weights": f"weights {number}".encode(),
        "snapshot": DatasetSnapshotFactory(),
        "metrics": {"test": {"macro_f1": 0.5 + number / 100}, "history": [{"epoch": 1, "val_loss": 1.0}]},
        "artifacts": {"confusion_matrix": PNG, "history.csv": b"epoch,val_loss\n1,1.0\n"},
        "user": user,
    }
    return register_model_version(**(arguments | overrides))


def test_versions_are_numbered_per_kind_and_store_their_files(admin_user, media_root) -> None:
    first = register(1, admin_user)
    second = register(2)

    assert (first.version, second.version) == (1, 2)
    assert first.trained_by == admin_user
    assert not first.is_active
    assert not second.is_active
    assert first.weights_sha256 == hashlib.sha256(b"weights 1").hexdigest()
    assert first.weights_path.startswith("models/keyframe_cnn/")
    assert first.weights_path.endswith(".safetensors")
    assert (media_root / first.weights_path).read_bytes() == b"weights 1"
    assert read_weights(first) == b"weights 1"
    assert set(first.artifacts) == {"confusion_matrix", "history.csv"}
    assert first.artifacts["confusion_matrix"].endswith(".png")
    assert first.artifacts["history.csv"].endswith(".csv")
    assert (media_root / first.artifacts["confusion_matrix"]).read_bytes() == PNG


def test_a_version_number_taken_meanwhile_is_retried(monkeypatch) -> None:
    """A registration whose number the unique constraint refuses (another process took it
    first) tries again with a fresh number."""
    register(1)
    original = ModelVersion.objects.create
    calls = {"n": 0}

    def create_racing(**fields):
        calls["n"] += 1
        if calls["n"] == 1:
            raise IntegrityError(
                "UNIQUE constraint failed: inference_modelversion.kind, inference_modelversion.version"
            )
        return original(**fields)

    monkeypatch.setattr(ModelVersion.objects, "create", create_racing)
    racing = register(2)
    assert calls["n"] == 2
    assert racing.version == 2
    assert sorted(ModelVersion.objects.values_list("version", flat=True)) == [1, 2]


def test_unknown_kind_and_empty_weights_are_refused() -> None:
    with pytest.raises(RegistryError, match="not a model kind"):
        register(1, kind="vlm_magic")
    with pytest.raises(RegistryError, match="no weights"):
        register(1, weights=b"")


def test_activate_keeps_one_active_version_and_records_history(admin_user) -> None:
    v1, v2 = register(1), register(2)
    assert active_version(ModelKind.KEYFRAME_CNN) is None

    activate(v1, admin_user)
    activate(v2, admin_user)

    v1.refresh_from_db()
    v2.refresh_from_db()
    assert not v1.is_active
    assert v2.is_active
    assert v2.activated_by == admin_user
    assert v2.activated_at is not None
    assert active_version(ModelKind.KEYFRAME_CNN) == v2
    history = list(ModelActivation.objects.order_by("at", "id").values_list("model_version", "previous", "action"))
    assert history == [(v1.pk, None, ActivationAction.ACTIVATED), (v2.pk, v1.pk, ActivationAction.ACTIVATED)]

    # Activating the active version again changes nothing.
    activate(v2, admin_user)
    assert ModelActivation.objects.count() == 2


def test_the_database_refuses_two_active_versions_of_a_kind() -> None:
    v1, v2 = register(1), register(2)
    activate(v1, None)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=v2.pk).update(is_active=True)


def test_rollback_restores_the_previous_versions_in_turn(admin_user) -> None:
    v1, v2, v3 = register(1), register(2), register(3)
    for version in (v1, v2, v3):
        activate(version, admin_user)
    assert rollback_target(ModelKind.KEYFRAME_CNN) == v2

    restored = rollback(ModelKind.KEYFRAME_CNN, admin_user)

    assert restored == v2
    assert restored.is_active
    assert active_version(ModelKind.KEYFRAME_CNN) == v2
    newest = ModelActivation.objects.first()
    assert (newest.model_version, newest.previous, newest.action, newest.by) == (
        v2,
        v3,
        ActivationAction.ROLLED_BACK,
        admin_user,
    )
    # The rolled-back version stays available, and a second rollback goes one further back.
    assert ModelVersion.objects.filter(pk=v3.pk).exists()
    assert rollback(ModelKind.KEYFRAME_CNN, admin_user) == v1
    assert active_version(ModelKind.KEYFRAME_CNN) == v1
    with pytest.raises(RegistryError, match="no earlier active version"):
        rollback(ModelKind.KEYFRAME_CNN, admin_user)
    # Activating v3 again and rolling back returns to v1.
    activate(v3, admin_user)
    assert rollback(ModelKind.KEYFRAME_CNN, admin_user) == v1


def test_rollback_without_history_is_refused() -> None:
    with pytest.raises(RegistryError):
        rollback(ModelKind.KEYFRAME_CNN, None)
    activate(register(1), None)
    assert rollback_target(ModelKind.KEYFRAME_CNN) is None
    with pytest.raises(RegistryError):
        rollback(ModelKind.KEYFRAME_CNN, None)


def test_tampered_or_missing_weights_are_refused(media_root) -> None:
    version = register(1)
    (media_root / version.weights_path).write_bytes(b"other weights")
    with pytest.raises(WeightsIntegrityError, match="SHA-256"):
        read_weights(version)
    # The predictor is never built from them (and torch is not needed to find out).
    with pytest.raises(WeightsIntegrityError):
        load_predictor(version)
    (media_root / version.weights_path).unlink()
    with pytest.raises(WeightsIntegrityError, match="missing"):
        read_weights(version)
