"""The key-frame CNN's trainer, predictor and metrics, on a tiny network and synthetic frames.

convnext_atto at 32 px, one thread: each training run takes a second or two.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import safetensors.torch  # noqa: E402
from PIL import Image  # noqa: E402

from annotation.derivatives import minimum_projection  # noqa: E402
from annotation.models import SIX_CLASSES  # noqa: E402
from inference.ml.keyframe import (  # noqa: E402
    CLASS_NAMES,
    ImageItem,
    KeyframeModelConfig,
    KeyframePredictor,
    compute_metrics,
    decode_gray,
    predict_naively,
    train_keyframe_model,
)
from inference.ml.keyframe.data import decode_items, normalise  # noqa: E402
from inference.ml.keyframe.evaluate import (  # noqa: E402
    best_keyframe_threshold,
    draw_plots,
    expected_calibration_error,
)
from inference.ml.keyframe.model import (  # noqa: E402
    CONFIG_METADATA_KEY,
    build_model,
    load_init_weights,
    model_from_safetensors,
)
from inference.ml.keyframe.trainer import CHECKPOINT_NAME, PEAK_RATIO_CANDIDATES, CheckpointMismatch, _augmenter  # noqa: E402
from inference.parameters import TrainKeyframeParameters  # noqa: E402

SIZE = 32
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def frame_png(label: int, variant: int) -> bytes:
    """A 64 x 64 grey frame whose class shows: the laterality puts a vessel-like bar on the left
    or the right, the category sets its contrast (better dark, bad faint, other none)."""
    rng = np.random.default_rng(1000 * label + variant)
    image = np.full((64, 64), 150, dtype=np.float64) + rng.normal(0, 6, (64, 64))
    laterality, category = divmod(label, 3)
    columns = slice(8, 24) if laterality == 0 else slice(40, 56)
    depth = (110, 45, 0)[category]
    image[10:54, columns] -= depth
    image[2:6, 2 : 6 if laterality == 0 else 62] = 255  # a marker that tells the side even in "other"
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def items(per_class: int, offset: int = 0) -> list[ImageItem]:
    out = []
    for label in range(6):
        for variant in range(per_class):
            data = frame_png(label, offset + variant)
            out.append(ImageItem(key=f"{label}-{offset + variant}", label=label, load=lambda data=data: data))
    return out


TRAIN = items(4)  # 24 frames
VALIDATION = items(1, offset=100)
TEST = items(2, offset=200)


class Recorder:
    """A TrainingReporter that remembers everything and can stop training on a given call."""

    def __init__(self, cancel_in_epoch: int | None = None, checkpoint: Path | None = None) -> None:
        self.progress_calls: list[tuple[float, str | None, dict | None]] = []
        self.lines: list[str] = []
        self.checks = 0
        self.cancel_in_epoch = cancel_in_epoch
        self.checkpoint = checkpoint
        self.checkpoint_epochs: list[int] = []

    def progress(self, fraction: float, step: str | None = None, metrics: dict | None = None) -> None:
        self.progress_calls.append((fraction, step, metrics))

    def log(self, line: str) -> None:
        self.lines.append(line)
        if self.checkpoint is not None and line.startswith("epoch "):
            saved = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            self.checkpoint_epochs.append(saved["epoch"])

    def check_cancelled(self) -> None:
        self.checks += 1
        step = self.progress_calls[-1][1] if self.progress_calls else None
        if self.cancel_in_epoch is not None and step and step.startswith(f"epoch {self.cancel_in_epoch}/"):
            raise KeyboardInterrupt("cancelled by the test")


def params(**overrides: Any) -> TrainKeyframeParameters:
    values: dict[str, Any] = {
        "arch": "convnext_atto",
        "image_size": SIZE,
        "epochs": 3,
        "batch_size": 8,
        "micro_batch_size": 4,
        "lr": 1e-3,
        "seed": 3,
        "patience": 5,
        "device": "cpu",
    }
    values.update(overrides)
    return TrainKeyframeParameters(**values)


def train(tmp: Path, reporter: Recorder | None = None, **overrides: Any):
    return train_keyframe_model(
        params(**overrides),
        TRAIN,
        VALIDATION,
        TEST,
        checkpoint_dir=tmp,
        reporter=reporter or Recorder(),
        threads=1,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """Three uninterrupted epochs, the run the other tests compare with."""
    directory = tmp_path_factory.mktemp("reference")
    reporter = Recorder(checkpoint=directory / CHECKPOINT_NAME)
    return train(directory, reporter), reporter


def test_class_names_are_the_annotation_classes() -> None:
    assert CLASS_NAMES == SIX_CLASSES
    assert KeyframeModelConfig().class_names == SIX_CLASSES


def test_decode_gray_resizes_any_image_to_a_grey_square() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 100, 50)).save(buffer, format="WEBP", lossless=True)
    image = decode_gray(buffer.getvalue(), 32)
    assert image.shape == (1, 32, 32)
    assert image.dtype == torch.uint8
    assert int(image[0, 16, 16]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)


def test_the_network_input_does_not_depend_on_the_display_window() -> None:
    # The same frame brighter, and with half the contrast: the high-pass input is the same.
    frame = decode_gray(frame_png(0, 0), SIZE).to(torch.int32)
    frame = frame.clamp(max=200)
    frame = frame - frame % 2  # even grey levels, so that halving them is exact
    brighter = (frame + 40).to(torch.uint8)
    flatter = (frame // 2).to(torch.uint8)
    config = KeyframeModelConfig(arch="convnext_atto", image_size=SIZE)
    reference_input = normalise(frame.to(torch.uint8)[None], config)
    torch.testing.assert_close(normalise(brighter[None], config), reference_input, atol=1e-4, rtol=0)
    torch.testing.assert_close(normalise(flatter[None], config), reference_input, atol=1e-4, rtol=0)
    assert reference_input.std().item() == pytest.approx(1.0, abs=0.05)


def test_training_checkpoints_every_epoch_and_reports(reference) -> None:
    result, reporter = reference
    assert reporter.checkpoint_epochs == [1, 2, 3]
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    steps = [step for _, step, _ in reporter.progress_calls if step]
    assert any(step.startswith("epoch 2/3: step ") and "train loss" in step for step in steps)
    fractions = [fraction for fraction, _, _ in reporter.progress_calls]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert reporter.checks > 3 * 6  # every micro-step asks
    assert sum(line.startswith("epoch ") for line in reporter.lines) == 3
    for name in ("laterality_f1", "keyframe_f1", "keyframe_auroc", "macro_f1", "ece", "accuracy"):
        assert result.metrics[name] is not None
    assert np.asarray(result.metrics["confusion_matrix"]).shape == (6, 6)
    assert result.metrics["epochs_run"] == 3
    assert set(result.plots) == {"confusion_matrix", "reliability", "curves"}
    assert all(png.startswith(PNG_MAGIC) for png in result.plots.values())
    assert result.model_config.arch == "convnext_atto"
    assert result.model_config.image_size == SIZE


def test_training_learns_the_synthetic_classes(reference) -> None:
    result, _ = reference
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.metrics["laterality_f1"] >= 0.75


def test_same_seed_gives_the_same_weights_and_another_seed_does_not(reference, tmp_path: Path) -> None:
    result, _ = reference
    again = train(tmp_path / "again")
    assert again.weights == result.weights
    other = train(tmp_path / "other", seed=4)
    assert other.weights != result.weights


def test_an_interrupted_run_resumes_from_its_checkpoint(reference, tmp_path: Path) -> None:
    result, _ = reference
    interrupted = Recorder(cancel_in_epoch=2)  # stops after the first micro-step of epoch 2
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, interrupted)
    saved = torch.load(tmp_path / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1

    resumed = Recorder()
    continued = train(tmp_path, resumed)
    assert any("Resuming after epoch 1" in line for line in resumed.lines)
    assert sum(line.startswith("epoch ") for line in resumed.lines) == 2  # epochs 2 and 3 only
    assert [row["epoch"] for row in continued.history] == [1, 2, 3]
    assert continued.history[0]["train_loss"] == result.history[0]["train_loss"]
    # Random states come back with the checkpoint: the same weights as the uninterrupted run.
    assert continued.weights == result.weights
    assert [row["val_loss"] for row in continued.history] == [row["val_loss"] for row in result.history]

    # A finished run found again (a crash after the last epoch): nothing is trained twice.
    again = Recorder()
    assert train(tmp_path, again).weights == result.weights
    assert not any(line.startswith("epoch ") for line in again.lines)


def test_resuming_with_other_parameters_is_refused(reference, tmp_path: Path) -> None:
    train(tmp_path, epochs=1)
    with pytest.raises(CheckpointMismatch):
        train(tmp_path, epochs=2, lr=5e-4)


def test_early_stopping_stops_and_keeps_the_best_epoch(tmp_path: Path) -> None:
    # Validation frames labelled with the wrong side: the better the network learns the
    # training frames, the worse the validation loss gets.
    mislabelled = [ImageItem(item.key, (item.label + 3) % 6, item.load) for item in TRAIN]
    reporter = Recorder()
    result = train_keyframe_model(
        params(epochs=8, patience=2),
        TRAIN,
        mislabelled,
        TEST,
        checkpoint_dir=tmp_path,
        reporter=reporter,
        threads=1,
    )
    assert result.metrics["early_stopped"] is True
    assert result.metrics["epochs_run"] < 8
    assert result.metrics["epochs_run"] == result.metrics["best_epoch"] + 2
    losses = [row["val_loss"] for row in result.history]
    assert result.metrics["best_val_loss"] == min(losses)
    assert any(line.startswith("Early stopping") for line in reporter.lines)
    saved = torch.load(tmp_path / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    best = safetensors.torch.load(result.weights)
    assert all(torch.equal(best[name], saved["best_state"][name]) for name in best)


def test_safetensors_round_trip(reference) -> None:
    result, _ = reference
    model = model_from_safetensors(result.weights, result.model_config)
    state = safetensors.torch.load(result.weights)
    assert all(torch.equal(value, state[name]) for name, value in model.state_dict().items())
    predictor = KeyframePredictor.from_safetensors(result.weights, result.model_config, device="cpu", threads=1)
    probabilities = predictor.predict([item.load() for item in TEST])
    assert probabilities.shape == (len(TEST), 6)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_predictor_matches_the_naive_loop(reference) -> None:
    result, _ = reference
    config = result.model_config
    model = model_from_safetensors(result.weights, config)
    frames = [item.load() for item in TEST + VALIDATION]
    predictor = KeyframePredictor.from_model(model, config, device="cpu", threads=1)
    batched = predictor.predict(frames, batch_size=5)  # batches that do not divide the frames
    naive = predict_naively(model, frames, config)
    assert batched.shape == naive.shape == (len(frames), 6)
    np.testing.assert_array_equal(batched.argmax(axis=1), naive.argmax(axis=1))
    np.testing.assert_allclose(batched, naive, atol=1e-4)
    assert predictor.predict([]).shape == (0, 6)


def test_init_weights_adapt_the_stem_and_skip_the_head(tmp_path: Path) -> None:
    rgb = KeyframeModelConfig(arch="convnext_atto", image_size=SIZE, in_chans=3)
    source = build_model(rgb)
    source.reset_classifier(10)  # a head of another size, as an ImageNet file would have
    path = tmp_path / "init.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))

    config = KeyframeModelConfig(arch="convnext_atto", image_size=SIZE)
    target = build_model(config)
    head_before = target.state_dict()["head.fc.weight"].clone()
    lines = load_init_weights(target, path, config)
    state = target.state_dict()
    torch.testing.assert_close(state["stem.0.weight"], source.state_dict()["stem.0.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(
        state["stages.0.blocks.0.conv_dw.weight"], source.state_dict()["stages.0.blocks.0.conv_dw.weight"]
    )
    assert torch.equal(state["head.fc.weight"], head_before)
    assert any("head.fc.weight" in line for line in lines)

    torch.save({"state_dict": build_model(KeyframeModelConfig(arch="convnext_nano")).state_dict()}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_init_weights(target, tmp_path / "x.pt", config)


# --- metrics on hand-made predictions ---------------------------------------------------------


def one_hot(indices: list[int], confidence: float = 1.0) -> np.ndarray:
    probabilities = np.full((len(indices), 6), (1.0 - confidence) / 5)
    probabilities[np.arange(len(indices)), indices] = confidence
    return probabilities


def test_perfect_predictions_score_one() -> None:
    labels = np.array([0, 1, 2, 3, 4, 5, 0, 3])
    metrics = compute_metrics(labels, one_hot(labels.tolist()))
    for name in ("accuracy", "macro_f1", "laterality_f1", "keyframe_precision", "keyframe_recall", "keyframe_f1"):
        assert metrics[name] == 1.0
    assert metrics["keyframe_auroc"] == 1.0
    assert metrics["ece"] == 0.0
    assert metrics["confusion_matrix"] == np.diag([2, 1, 1, 2, 1, 1]).tolist()
    assert metrics["class_counts"] == dict(zip(CLASS_NAMES, [2, 1, 1, 2, 1, 1], strict=True))


def test_metrics_of_a_known_confusion() -> None:
    labels = np.array([0, 0, 1, 3, 3, 5])
    predicted = [0, 3, 1, 3, 4, 2]  # one better frame on the wrong side, one RCA better as bad, one RCA other as LCA
    metrics = compute_metrics(labels, one_hot(predicted, confidence=0.9))
    expected = np.zeros((6, 6), dtype=int)
    for truth, guess in zip(labels, predicted, strict=True):
        expected[truth, guess] += 1
    assert metrics["confusion_matrix"] == expected.tolist()
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    # Laterality: truth L L L R R R, predicted L R L R R L -> F1 2/3 for each side.
    assert metrics["laterality_f1"] == pytest.approx(2 / 3, abs=1e-6)
    # Key frames: truth 1 1 0 1 1 0, predicted (better of either side) 1 1 0 1 0 0.
    assert metrics["keyframe_precision"] == 1.0
    assert metrics["keyframe_recall"] == pytest.approx(3 / 4)
    assert metrics["keyframe_f1"] == pytest.approx(6 / 7, abs=1e-6)
    # Six classes, macro over the four classes present: F1 LCA_better 2/3, LCA_bad 1, RCA_better 1/2, RCA_other 0.
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1 + 1 / 2 + 0) / 4, abs=1e-6)


def test_expected_calibration_error() -> None:
    # Ten frames at confidence 0.8 of which eight are right, five at 0.6 of which three: calibrated.
    confidence = np.array([0.8] * 10 + [0.6] * 5)
    correct = np.array([1] * 8 + [0] * 2 + [1] * 3 + [0] * 2, dtype=float)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0, abs=1e-9)
    # Always 0.9 sure, right half the time: ECE 0.4.
    assert expected_calibration_error(np.full(4, 0.9), np.array([1, 0, 1, 0.0])) == pytest.approx(0.4)


def test_degenerate_test_splits_do_not_crash() -> None:
    only_lca_other = compute_metrics(np.array([2, 2, 2]), one_hot([2, 2, 1], confidence=0.7))
    assert only_lca_other["keyframe_auroc"] is None
    assert only_lca_other["laterality_auroc"] is None
    assert only_lca_other["laterality_f1"] == 1.0
    assert only_lca_other["keyframe_f1"] == 0.0  # no positives to find
    assert only_lca_other["class_counts"]["RCA_better"] == 0
    empty = compute_metrics(np.zeros(0, dtype=int), np.zeros((0, 6)))
    assert empty["n_frames"] == 0
    assert empty["macro_f1"] is None
    plots = draw_plots(only_lca_other, [{"epoch": 1, "train_loss": 1.0, "val_loss": None}])
    assert all(png.startswith(PNG_MAGIC) for png in plots.values())
    assert draw_plots(empty, [])["reliability"].startswith(PNG_MAGIC)


def test_the_keyframe_threshold_is_the_best_one_on_the_given_frames() -> None:
    # Key-frame scores: the key frames (labels 0 and 3) score 0.3-0.4, the rest 0.1-0.2 and one 0.35.
    labels = np.array([0, 3, 0, 3, 1, 2, 4, 5, 1])
    score = np.array([0.4, 0.38, 0.33, 0.31, 0.2, 0.1, 0.15, 0.12, 0.35])
    probabilities = np.zeros((len(labels), 6))
    probabilities[:, 0] = score
    probabilities[:, 2] = 1 - score
    threshold = best_keyframe_threshold(labels, probabilities)
    assert 0.2 < threshold <= 0.31  # all four key frames and the one lookalike: F1 8/9
    assert compute_metrics(labels, probabilities)["keyframe_f1"] == 0.0  # nothing reaches 0.5
    tuned = compute_metrics(labels, probabilities, keyframe_threshold=threshold)
    assert tuned["keyframe_f1"] == pytest.approx(8 / 9, abs=1e-6)
    assert tuned["keyframe_threshold"] == threshold
    # Nothing to choose between: 0.5.
    assert best_keyframe_threshold(np.array([1, 2]), probabilities[:2]) == 0.5


def test_training_can_select_by_a_metric_tune_the_threshold_and_subsample(tmp_path: Path) -> None:
    reporter = Recorder()
    result = train(
        tmp_path,
        reporter,
        epochs=2,
        selection_metric="val_keyframe_f1",
        label_smoothing=0.1,
        epoch_fraction=0.5,
        tune_keyframe_threshold=True,
    )
    steps = [step for _, step, _ in reporter.progress_calls if step]
    assert any(step.startswith("epoch 1/2: step 2/2") for step in steps)  # 12 of 24 frames, batches of 8
    assert not any("step 3/" in step for step in steps)
    assert result.model_config.keyframe_threshold == result.metrics["keyframe_threshold"]
    assert any(line.startswith("Key-frame threshold") for line in reporter.lines)
    best = max(result.history, key=lambda row: (row["val_keyframe_f1"], -row["val_loss"]))
    assert result.metrics["best_epoch"] == best["epoch"]
    assert result.probabilities["validation"].shape == (len(VALIDATION), 6)
    assert result.probabilities["test"].shape == (len(TEST), 6)
    # The weights file's metadata carries the tuned threshold too.
    header = json.loads(result.weights[8 : 8 + int.from_bytes(result.weights[:8], "little")])
    stored = KeyframeModelConfig.model_validate_json(header["__metadata__"][CONFIG_METADATA_KEY])
    assert stored.keyframe_threshold == result.model_config.keyframe_threshold
    # The new training parameters are part of the checkpoint's fingerprint.
    with pytest.raises(CheckpointMismatch):
        train(tmp_path, epochs=2, selection_metric="val_keyframe_f1", label_smoothing=0.1, epoch_fraction=1.0)


def test_the_mild_augmentation_keeps_grey_uint8_frames() -> None:
    frames = torch.stack([decode_gray(frame_png(label, 0), SIZE) for label in range(6)])
    augmenter = _augmenter(params(augmentation="mild"))
    assert augmenter is not None
    augmented = torch.stack([augmenter(frame) for frame in frames])
    assert augmented.shape == frames.shape
    assert augmented.dtype == torch.uint8
    assert _augmenter(params(augment=False)) is None


def test_training_with_loop_context_measures_and_stores_it(tmp_path: Path) -> None:
    # The test frames in two loops by side (a run shows one artery), numbered in order.
    in_loops = [
        ImageItem(item.key, item.label, item.load, loop="left" if item.label < 3 else "right", index=number)
        for number, item in enumerate(TEST)
    ]
    result = train_keyframe_model(
        params(epochs=1, loop_context_window=1, tune_keyframe_threshold=True),
        TRAIN,
        VALIDATION,
        in_loops,
        checkpoint_dir=tmp_path,
        reporter=Recorder(),
        threads=1,
    )

    assert result.model_config.loop_context_window == 1
    assert result.metrics["loop_context_window"] == 1
    # The peak ratio was chosen on the validation split with the threshold, and stored.
    assert result.model_config.keyframe_peak_ratio in PEAK_RATIO_CANDIDATES
    assert result.metrics["keyframe_peak_ratio"] == result.model_config.keyframe_peak_ratio
    assert set(result.metrics["per_frame"]) >= {"laterality_f1", "keyframe_f1", "macro_f1"}
    # The test figures are those of the probabilities in context: one laterality per loop.
    lca = result.probabilities["test"][:, :3].sum(axis=1)
    left = np.array([item.loop == "left" for item in in_loops])
    assert np.ptp(lca[left]) < 1e-6
    assert np.ptp(lca[~left]) < 1e-6


def in_loops_of_two(base: list[ImageItem]) -> list[ImageItem]:
    """The items as loops of two frames each, with each loop's minimum projection."""
    out = []
    for start in range(0, len(base), 2):
        members = base[start : start + 2]
        projection = minimum_projection([item.load() for item in members])
        out.extend(
            dataclasses.replace(
                item, loop=f"loop{start // 2}", index=index, reference=lambda projection=projection: projection
            )
            for index, item in enumerate(members)
        )
    return out


def test_frames_decode_beside_their_loop_reference() -> None:
    loop = in_loops_of_two(TEST)[:2]
    images = decode_items(loop, SIZE, with_reference=True)
    assert images.shape == (2, 2, SIZE, SIZE)
    expected = decode_gray(loop[0].reference(), SIZE)[0]
    assert torch.equal(images[0, 1], expected)
    assert torch.equal(images[1, 1], expected)
    assert torch.equal(images[1, 0], decode_gray(loop[1].load(), SIZE)[0])
    # The projection is the darker of the two frames, pixel by pixel.
    assert torch.all(images[:, 1] <= images[:, 0] + 1)
    with pytest.raises(ValueError, match="no loop reference"):
        decode_items(TEST[:2], SIZE, with_reference=True)


def test_augmentation_moves_a_frame_and_its_loop_reference_together() -> None:
    frame = decode_gray(frame_png(0, 0), SIZE)
    augmenter = _augmenter(params(augmentation="mild"))
    assert augmenter is not None
    torch.manual_seed(0)
    pair = augmenter(torch.cat([frame, frame]).unsqueeze(1)).squeeze(1)
    # One draw of the rotation, shift, zoom, brightness and contrast for both channels.
    assert torch.equal(pair[0], pair[1])
    assert not torch.equal(pair[0], frame[0])


def test_a_model_reading_the_loop_reference_trains_and_predicts_as_the_naive_loop(tmp_path: Path) -> None:
    train_items, validation_items, test_items = map(in_loops_of_two, (TRAIN, VALIDATION, TEST))
    result = train_keyframe_model(
        params(epochs=1, loop_reference=True),
        train_items,
        validation_items,
        test_items,
        checkpoint_dir=tmp_path,
        reporter=Recorder(),
        threads=1,
    )
    config = result.model_config
    assert config.loop_reference is True
    assert config.in_chans == 2
    model = model_from_safetensors(result.weights, config)
    assert model.stem[0].in_channels == 2

    frames = [item.load() for item in test_items]
    references = [item.reference() for item in test_items]
    predictor = KeyframePredictor.from_model(model, config, device="cpu", threads=1)
    batched = predictor.predict(frames, batch_size=3, references=references)
    naive = predict_naively(model, frames, config, references)
    np.testing.assert_allclose(batched, naive, atol=1e-4)
    # The reference is read: another one changes the prediction.
    blank = [frame_png(2, 999)] * len(frames)
    assert not np.allclose(predictor.predict(frames, references=blank), batched, atol=1e-4)
    with pytest.raises(ValueError, match="references"):
        predictor.predict(frames)
    with pytest.raises(ValueError, match="shorter"):  # zip(strict=True): one reference per frame
        predictor.predict(frames, references=references[:-1])
