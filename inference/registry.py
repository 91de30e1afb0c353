"""The model registry: trained models as numbered versions, one active per kind.

A ModelVersion's weights are a safetensors file, content-addressed in storage
(``models/<kind>/..../<sha256>.safetensors``) with the hash on the row; plots and other files
drawn at the end of training are stored the same way and listed in ``artifacts``.

``config`` holds ``{"model": <KeyframeModelConfig>, "training": <TrainKeyframeParameters>}``:
the first is what a predictor is built from, the second how the model was trained.
``metrics`` holds ``{"test": <test-split metrics>, "history": [<per-epoch metrics>, ...]}``.

Activation is one transaction: the current version is deactivated, the new one activated and
a ModelActivation row records who, when and which version it replaced. The database allows one
active version per kind (a partial unique constraint), so two admins activating at once cannot
leave two active. A rollback undoes the most recent activation that is still in effect: the
history is replayed as a stack (an activation pushes, a rollback pops), so rolling back twice
from v3 goes to v2, then to v1.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from annotation.derivatives import StoredFiles
from inference.models import ActivationAction, DatasetSnapshot, Job, ModelActivation, ModelKind, ModelVersion

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from inference.ml.keyframe.predictor import KeyframePredictor

# Attempts at taking the next version number when another registration takes it first.
_VERSION_ATTEMPTS = 5
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class RegistryError(Exception):
    """A registry operation that cannot be done; the message is meant for the admin."""


class WeightsIntegrityError(RegistryError):
    """The stored weights are not the ones the version recorded."""


def _artifact_extension(name: str, data: bytes) -> str:
    if "." in name:
        return name.rsplit(".", 1)[1].lower()
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data[:1] in (b"{", b"["):
        return "json"
    return "bin"


def register_model_version(
    *,
    kind: str,
    architecture: str,
    config: dict[str, Any],
    weights: bytes,
    snapshot: DatasetSnapshot,
    metrics: dict[str, Any],
    artifacts: dict[str, bytes] | None = None,
    job: Job | None = None,
    user: User | None = None,
) -> ModelVersion:
    """Store the weights and artifacts and record the next version of ``kind`` (inactive)."""
    if kind not in ModelKind.values:
        raise RegistryError(f"{kind!r} is not a model kind")
    if not weights:
        raise RegistryError("no weights to register")
    files = StoredFiles()
    try:
        weights_path = files.save_bytes(f"models/{kind}", "safetensors", weights)
        stored_artifacts = {
            name: files.save_bytes(f"models/{kind}/artifacts", _artifact_extension(name, data), data)
            for name, data in (artifacts or {}).items()
        }
        for attempt in range(_VERSION_ATTEMPTS):
            try:
                with transaction.atomic():
                    # On PostgreSQL this locks the kind's rows; SQLite serialises writers anyway
                    # (BEGIN IMMEDIATE). The unique (kind, version) constraint is the last word,
                    # and a lost race retries with the next number.
                    list(ModelVersion.objects.select_for_update().filter(kind=kind).values_list("pk", flat=True))
                    latest = ModelVersion.objects.filter(kind=kind).aggregate(n=Max("version"))["n"] or 0
                    return ModelVersion.objects.create(
                        kind=kind,
                        version=latest + 1,
                        architecture=architecture,
                        config=config,
                        weights_path=weights_path,
                        weights_sha256=hashlib.sha256(weights).hexdigest(),
                        snapshot=snapshot,
                        metrics=metrics,
                        artifacts=stored_artifacts,
                        training_job=job,
                        trained_by=user,
                    )
            except IntegrityError:
                if attempt == _VERSION_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
    except BaseException:
        files.remove_created()
        raise


def active_version(kind: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(kind=kind, is_active=True).first()


def _switch(version: ModelVersion, user: User | None, action: ActivationAction) -> ModelVersion:
    """Make ``version`` the active one of its kind and record it; the caller holds the
    transaction."""
    current = ModelVersion.objects.select_for_update().filter(kind=version.kind, is_active=True).first()
    now = timezone.now()
    if current is not None:
        # Deactivate first: the partial unique constraint allows one active row per kind.
        ModelVersion.objects.filter(pk=current.pk).update(is_active=False, updated_at=now)
    ModelVersion.objects.filter(pk=version.pk).update(
        is_active=True, activated_by=user, activated_at=now, updated_at=now
    )
    ModelActivation.objects.create(kind=version.kind, model_version=version, previous=current, action=action, by=user)
    version.refresh_from_db()
    return version


def activate(version: ModelVersion, user: User | None) -> ModelVersion:
    """Make ``version`` the active version of its kind. Activating the active one changes
    nothing."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.is_active:
            return version
        return _switch(version, user, ActivationAction.ACTIVATED)


def activation_stack(kind: str) -> list[int]:
    """The primary keys of the versions whose activations are still in effect, oldest first:
    the last is the active one, the one before it is where a rollback goes."""
    stack: list[int] = []
    for model_version_id, action in (
        ModelActivation.objects.filter(kind=kind).order_by("at", "id").values_list("model_version_id", "action")
    ):
        if action == ActivationAction.ROLLED_BACK:
            if stack:
                stack.pop()
            # A rollback re-activates the version below; keep the stack honest if the
            # history was written otherwise.
            if not stack or stack[-1] != model_version_id:
                stack.append(model_version_id)
        else:
            stack.append(model_version_id)
    return stack


def rollback_target(kind: str) -> ModelVersion | None:
    """The version a rollback of ``kind`` would activate, or None."""
    current = active_version(kind)
    stack = activation_stack(kind)
    if current is None or len(stack) < 2 or stack[-1] != current.pk:
        return None
    return ModelVersion.objects.get(pk=stack[-2])


def rollback(kind: str, user: User | None) -> ModelVersion:
    """Re-activate the version that was active before the current one; return it."""
    with transaction.atomic():
        # Lock the kind's versions first so two rollbacks at once go one after the other.
        list(ModelVersion.objects.select_for_update().filter(kind=kind).values_list("pk", flat=True))
        target = rollback_target(kind)
        if target is None:
            raise RegistryError("There is no earlier active version to roll back to.")
        return _switch(target, user, ActivationAction.ROLLED_BACK)


def read_weights(version: ModelVersion) -> bytes:
    """The version's safetensors bytes, checked against the recorded hash."""
    try:
        with default_storage.open(version.weights_path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise WeightsIntegrityError(f"The weights of {version} are missing from storage.") from None
    if hashlib.sha256(data).hexdigest() != version.weights_sha256:
        raise WeightsIntegrityError(f"The weights of {version} are not the ones registered (SHA-256 mismatch).")
    return data


def load_predictor(version: ModelVersion, *, device: str = "auto", threads: int | None = None) -> KeyframePredictor:
    """A predictor for the version's stored weights (imports torch: call from a worker or a
    command, never at web start-up)."""
    if version.kind != ModelKind.KEYFRAME_CNN:
        raise RegistryError(f"No predictor for models of kind {version.kind!r}.")
    weights = read_weights(version)
    from inference.ml.keyframe.config import KeyframeModelConfig
    from inference.ml.keyframe.predictor import KeyframePredictor

    config = KeyframeModelConfig.model_validate(version.config["model"])
    return KeyframePredictor.from_safetensors(weights, config, device=device, threads=threads)
