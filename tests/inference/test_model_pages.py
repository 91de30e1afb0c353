"""The model registry and dataset pages: admins only, every visitor checked on every page and
form; what each page shows and does."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import SIX_CLASSES
from inference.datasets import build_snapshot
from inference.models import DatasetSnapshot, Job, JobKind, JobStatus, ModelActivation, ModelKind, ModelVersion
from inference.parameters import CPU_RECIPE
from inference.registry import activate, active_version, register_model_version
from tests.conftest import visit_as
from tests.factories import CineLoopFactory, ExamFactory, ModelVersionFactory, label_loop_frames

pytestmark = pytest.mark.django_db

VISITORS = ["anonymous", "no_role", "physician", "cardiologist", "admin"]
#: The training form's recipe fields, as the page posts them (the CPU recipe's values).
RECIPE_FIELDS = {
    "patience": 3,
    "selection_metric": "val_loss",
    "label_smoothing": 0.0,
    "epoch_fraction": 1.0,
    "augment": "on",
    "augmentation": "trivial_augment_wide",
    "loop_context_window": "",
}
PNG = b"\x89PNG\r\n\x1a\n" + b"confusion"


def metrics(macro_f1: float, ece: float) -> dict:
    matrix = [[5 if i == j else 1 for j in range(6)] for i in range(6)]
    return {
        "test": {
            "laterality_f1": 0.97,
            "keyframe_precision": 0.9,
            "keyframe_recall": 0.8,
            "keyframe_f1": 0.85,
            "keyframe_auroc": 0.93,
            "macro_f1": macro_f1,
            "accuracy": 0.8,
            "ece": ece,
            "confusion_matrix": matrix,
        },
        "history": [{"epoch": 1, "train_loss": 1.5, "val_loss": 1.4}, {"epoch": 2, "train_loss": 1.1, "val_loss": 1.2}],
    }


@pytest.fixture
def snapshot(db) -> DatasetSnapshot:
    for _ in range(3):
        exam = ExamFactory()
        label_loop_frames(CineLoopFactory(exam=exam, frame_count=4), ["LCA_better", "LCA_bad", "LCA_other", "LCA_bad"])
        label_loop_frames(CineLoopFactory(exam=exam, frame_count=4), ["RCA_better", "RCA_bad", "RCA_other", "RCA_bad"])
    return build_snapshot(name="pages snapshot", seed=0)


@pytest.fixture
def versions(snapshot, admin_user) -> list[ModelVersion]:
    made = [
        register_model_version(
            kind=ModelKind.KEYFRAME_CNN,
            architecture="convnext_atto",
            config={"model": {"arch": "convnext_atto", "image_size": 32}, "training": {"epochs": 2, "lr": 0.0001}},
            weights=f"weights {n}".encode(),
            snapshot=snapshot,
            metrics=metrics(macro_f1=0.7 + n / 10, ece=0.1 - n / 100),
            artifacts={"confusion_matrix": PNG},
            user=admin_user,
        )
        for n in (1, 2)
    ]
    activate(made[0], admin_user)
    return [ModelVersion.objects.get(pk=v.pk) for v in made]


def assert_access(response, visitor: str, path: str, ok: int = 200) -> None:
    if visitor == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(f"/login/?next={path}")
    elif visitor == "admin":
        assert response.status_code == ok, response.content[:800]
    else:
        assert response.status_code == 403


PAGES = {
    "model list": lambda v, s: reverse("inference:model-list"),
    "train form": lambda v, s: reverse("inference:model-train"),
    "model detail": lambda v, s: reverse("inference:model-detail", kwargs={"model_uuid": v[1].uuid}),
    "artifact": lambda v, s: reverse(
        "inference:model-artifact", kwargs={"model_uuid": v[1].uuid, "name": "confusion_matrix"}
    ),
    "compare": lambda v, s: reverse("inference:model-compare") + f"?a={v[0].uuid}&b={v[1].uuid}",
    "snapshot list": lambda v, s: reverse("inference:snapshot-list"),
    "snapshot detail": lambda v, s: reverse("inference:snapshot-detail", kwargs={"snapshot_uuid": s.uuid}),
}


@pytest.mark.parametrize("visitor", VISITORS)
@pytest.mark.parametrize("page", PAGES)
def test_pages_are_for_admins_only(client, users_by_role, versions, snapshot, visitor, page) -> None:
    path = PAGES[page](versions, snapshot)
    response = visit_as(client, users_by_role, visitor).get(path)
    assert_access(response, visitor, path.split("?")[0])


@pytest.mark.parametrize("visitor", VISITORS)
def test_activate_is_for_admins_only(client, users_by_role, versions, visitor) -> None:
    path = reverse("inference:model-activate", kwargs={"model_uuid": versions[1].uuid})
    response = visit_as(client, users_by_role, visitor).post(path)
    assert_access(response, visitor, path, ok=302)
    assert active_version(ModelKind.KEYFRAME_CNN) == (versions[1] if visitor == "admin" else versions[0])


@pytest.mark.parametrize("visitor", VISITORS)
def test_rollback_is_for_admins_only(client, users_by_role, versions, admin_user, visitor) -> None:
    activate(versions[1], admin_user)
    path = reverse("inference:model-rollback", kwargs={"model_uuid": versions[1].uuid})
    response = visit_as(client, users_by_role, visitor).post(path)
    assert_access(response, visitor, path, ok=302)
    assert active_version(ModelKind.KEYFRAME_CNN) == (versions[0] if visitor == "admin" else versions[1])


@pytest.mark.parametrize("visitor", VISITORS)
def test_snapshot_create_is_for_admins_only(client, users_by_role, snapshot, visitor) -> None:
    path = reverse("inference:snapshot-create")
    data = {"name": "built here", "seed": 3, "validation_fraction": 0.2, "test_fraction": 0.2, "split_by": "loop"}
    response = visit_as(client, users_by_role, visitor).post(path, data)
    assert_access(response, visitor, path, ok=302)
    assert DatasetSnapshot.objects.filter(name="built here").exists() == (visitor == "admin")


@pytest.mark.parametrize("visitor", VISITORS)
def test_train_is_for_admins_only(client, users_by_role, snapshot, visitor, settings, tmp_path) -> None:
    settings.VAR_DIR = tmp_path
    path = reverse("inference:model-train")
    data = {
        "arch": "convnext_atto",
        "epochs": 2,
        "batch_size": 8,
        "lr": 0.001,
        "image_size": 32,
        "seed": 1,
        **RECIPE_FIELDS,
        "snapshot": str(snapshot.uuid),
        "split_by": "exam",
        "activate": "on",
    }
    response = visit_as(client, users_by_role, visitor).post(path, data)
    assert_access(response, visitor, path, ok=302)
    jobs = Job.objects.filter(kind=JobKind.TRAIN_KEYFRAME)
    if visitor != "admin":
        assert not jobs.exists()
        return
    job = jobs.get()
    assert response["Location"] == job.get_absolute_url()
    assert job.created_by == users_by_role["admin"]
    assert job.status == JobStatus.QUEUED
    assert job.exclusive_key == "train:keyframe_cnn"
    assert job.parameters["arch"] == "convnext_atto"
    assert job.parameters["snapshot"] == str(snapshot.uuid)
    assert job.parameters["activate"] is True
    assert job.parameters["image_size"] == 32


def test_a_second_training_while_one_runs_is_a_form_error(client, admin_user) -> None:
    running = Job.objects.create(
        kind=JobKind.TRAIN_KEYFRAME, status=JobStatus.RUNNING, exclusive_key="train:keyframe_cnn"
    )
    client.force_login(admin_user)
    data = {"arch": "convnext_atto", "epochs": 2, "batch_size": 8, "lr": 0.001, "image_size": 32, "seed": 0}
    response = client.post(reverse("inference:model-train"), RECIPE_FIELDS | data | {"split_by": "exam"})
    assert response.status_code == 409
    assert "already queued or running" in response.content.decode()
    assert str(running.uuid) in response.content.decode()
    assert Job.objects.count() == 1


def test_invalid_training_form_is_shown_again(client, admin_user) -> None:
    client.force_login(admin_user)
    data = {"arch": "resnet50", "epochs": 0, "batch_size": 8, "lr": 0.001, "image_size": 32, "seed": 0}
    response = client.post(reverse("inference:model-train"), data | {"split_by": "exam"})
    assert response.status_code == 400
    assert not Job.objects.exists()


def test_train_form_offers_the_study_defaults_the_recipes_and_snapshots(client, admin_user, snapshot) -> None:
    client.force_login(admin_user)
    response = client.get(reverse("inference:model-train"))
    content = response.content.decode()
    assert response.context["recipes"]["cpu"]["arch"] == CPU_RECIPE["arch"]
    assert response.context["recipes"]["study"]["arch"] == "convnext_base"
    assert 'id="training-recipes"' in content
    assert 'data-recipe="cpu"' in content
    assert '<option value="convnext_base" selected>' in content
    assert 'value="200"' in content
    assert 'value="128"' in content
    assert 'value="0.0001"' in content
    assert "pages snapshot" in content
    assert "New snapshot from the current final labels" in content


def test_model_detail_shows_loop_context_figures_beside_the_per_frame_ones(client, admin_user) -> None:
    version = ModelVersionFactory(
        config={
            "model": {
                "arch": "convnext_atto",
                "loop_context_window": 2,
                "keyframe_threshold": 0.42,
                "keyframe_peak_ratio": 0.7,
            }
        },
        metrics={
            "test": {
                "laterality_f1": 0.968,
                "keyframe_f1": 0.841,
                "per_frame": {"laterality_f1": 0.931, "keyframe_f1": 0.823},
            }
        },
    )
    client.force_login(admin_user)

    content = client.get(version.get_absolute_url()).content.decode()

    assert "with loop context" in content
    assert "±2 frames" in content
    assert "P(better) ≥ 0.420" in content
    assert "below 0.7 of its loop's best" in content
    for figure in ("0.968", "0.931", "0.841", "0.823"):
        assert figure in content


def test_model_list_marks_the_active_version(client, admin_user, versions) -> None:
    client.force_login(admin_user)
    content = client.get(reverse("inference:model-list")).content.decode()
    assert content.count('<span class="badge">active</span>') == 1
    assert versions[0].get_absolute_url() in content
    assert versions[1].get_absolute_url() in content
    assert "0.900" in content  # v2's macro F1
    assert reverse("inference:model-train") in content


def test_model_detail_shows_metrics_plots_config_and_history(client, admin_user, versions) -> None:
    client.force_login(admin_user)
    content = client.get(versions[0].get_absolute_url()).content.decode()
    assert "Laterality F1" in content
    assert "0.970" in content
    assert (
        reverse("inference:model-artifact", kwargs={"model_uuid": versions[0].uuid, "name": "confusion_matrix"})
        in content
    )
    assert "training.lr" in content
    assert versions[0].snapshot.get_absolute_url() in content
    assert "Activated" in content
    assert "lab_admin" in content
    # v1 is active and nothing was active before it: no rollback offered, no activate button.
    assert reverse("inference:model-rollback", kwargs={"model_uuid": versions[0].uuid}) not in content
    assert reverse("inference:model-activate", kwargs={"model_uuid": versions[0].uuid}) not in content

    other = client.get(versions[1].get_absolute_url()).content.decode()
    assert reverse("inference:model-activate", kwargs={"model_uuid": versions[1].uuid}) in other
    assert "confirm(" in other


def test_activate_then_roll_back_from_the_pages(client, admin_user, versions) -> None:
    client.force_login(admin_user)
    response = client.post(reverse("inference:model-activate", kwargs={"model_uuid": versions[1].uuid}), follow=True)
    assert "is now the active" in response.content.decode()
    rollback_url = reverse("inference:model-rollback", kwargs={"model_uuid": versions[1].uuid})
    assert rollback_url in response.content.decode()
    assert "Roll back to convnext_atto v1" in response.content.decode()

    response = client.post(rollback_url, follow=True)
    assert response.redirect_chain[-1][0] == versions[0].get_absolute_url()
    assert "Rolled back" in response.content.decode()
    assert active_version(ModelKind.KEYFRAME_CNN) == versions[0]
    assert ModelActivation.objects.first().action == "rolled_back"

    # Nothing left to roll back to: the page says so.
    response = client.post(rollback_url, follow=True)
    assert "no earlier active version" in response.content.decode()


def test_artifact_is_the_stored_png(client, admin_user, versions) -> None:
    client.force_login(admin_user)
    url = reverse("inference:model-artifact", kwargs={"model_uuid": versions[0].uuid, "name": "confusion_matrix"})
    response = client.get(url)
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == PNG
    missing = reverse("inference:model-artifact", kwargs={"model_uuid": versions[0].uuid, "name": "nothing"})
    assert client.get(missing).status_code == 404


def test_compare_marks_the_better_value(client, admin_user, versions) -> None:
    client.force_login(admin_user)
    url = reverse("inference:model-compare") + f"?a={versions[0].uuid}&b={versions[1].uuid}"
    response = client.get(url)
    content = response.content.decode()
    # v2 has the higher macro F1 and the lower calibration error; the rest tie.
    assert content.count('title="better"') == 2
    assert "<strong>0.900</strong>" in content
    assert "<strong>0.080</strong>" in content
    # Both confusion matrices.
    assert content.count("Confusion matrix of") == 4  # two headings, two image alt texts
    for name in SIX_CLASSES:
        assert name in content
    assert client.get(reverse("inference:model-compare") + "?a=x&b=y").status_code == 400
    assert (
        client.get(reverse("inference:model-compare") + f"?a={versions[0].uuid}&b={snapshot_uuid()}").status_code == 404
    )


def snapshot_uuid() -> str:
    return "00000000-0000-4000-8000-000000000000"


def test_snapshot_pages_show_counts_and_models(client, admin_user, versions, snapshot) -> None:
    client.force_login(admin_user)
    content = client.get(snapshot.get_absolute_url()).content.decode()
    assert snapshot.manifest_sha256 in content
    assert "verified" in content
    assert versions[0].get_absolute_url() in content
    for name in SIX_CLASSES:
        assert name in content
    listing = client.get(reverse("inference:snapshot-list")).content.decode()
    assert snapshot.get_absolute_url() in listing


def test_snapshot_page_reports_a_tampered_manifest(client, admin_user, snapshot, media_root) -> None:
    (media_root / snapshot.manifest_path).write_text("{}")
    client.force_login(admin_user)
    content = client.get(snapshot.get_absolute_url()).content.decode()
    assert "SHA-256 mismatch" in content
    assert "verified" not in content


def test_snapshot_create_reports_why_it_cannot(client, admin_user) -> None:
    client.force_login(admin_user)
    data = {"name": "nothing", "seed": 0, "validation_fraction": 0.15, "test_fraction": 0.15, "split_by": "exam"}
    response = client.post(reverse("inference:snapshot-create"), data)
    assert response.status_code == 409
    assert "no final labels" in response.content.decode()
    response = client.post(reverse("inference:snapshot-create"), data | {"test_fraction": 0.7})
    assert response.status_code == 400


def test_get_on_post_only_urls_is_refused(client, admin_user, versions) -> None:
    client.force_login(admin_user)
    for name in ("inference:model-activate", "inference:model-rollback"):
        assert client.get(reverse(name, kwargs={"model_uuid": versions[0].uuid})).status_code == 405
    assert client.get(reverse("inference:snapshot-create")).status_code == 405


def test_admins_see_the_models_link(client, users_by_role) -> None:
    for visitor in ("admin", "physician"):
        client.force_login(users_by_role[visitor])
        content = client.get(reverse("home")).content.decode()
        assert (reverse("inference:model-list") in content) == (visitor == "admin")
