"""Building the network, initialising it from a local file, and its weights as safetensors."""

from __future__ import annotations

from pathlib import Path

import safetensors.torch
import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

from inference.ml.keyframe.config import KeyframeModelConfig

#: Metadata key under which the weights file carries its config.
CONFIG_METADATA_KEY = "keyframe_model_config"


def build_model(config: KeyframeModelConfig) -> nn.Module:
    """A randomly initialised network (never downloads: ``pretrained=False``)."""
    return timm.create_model(config.arch, pretrained=False, num_classes=config.num_classes, in_chans=config.in_chans)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy of the weights (safetensors refuses strided tensors, and
    channels-last convolution weights are strided)."""
    return {name: value.detach().to("cpu", copy=True).contiguous() for name, value in model.state_dict().items()}


def weights_to_safetensors(state: dict[str, torch.Tensor], config: KeyframeModelConfig) -> bytes:
    tensors = {name: value.contiguous() for name, value in state.items()}
    # One metadata key only: safetensors writes the metadata map in hash order, so with two keys
    # the same weights could come out as different bytes (and a different SHA-256) each time.
    return safetensors.torch.save(tensors, metadata={CONFIG_METADATA_KEY: config.model_dump_json()})


def model_from_safetensors(weights: bytes, config: KeyframeModelConfig) -> nn.Module:
    model = build_model(config)
    model.load_state_dict(safetensors.torch.load(weights), strict=True)
    return model


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        state: object = safetensors.torch.load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # Training scripts wrap the weights in various ways; unwrap the usual ones.
    while isinstance(state, dict) and len(state) < 16:
        wrappers = ("state_dict", "model", "model_state_dict", "module")
        inner = next((state[key] for key in wrappers if key in state), None)
        if not isinstance(inner, dict):
            break
        state = inner
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return {name.removeprefix("module."): value for name, value in state.items()}


def load_init_weights(model: nn.Module, path: Path, config: KeyframeModelConfig) -> list[str]:
    """Initialise ``model`` from a local weights file (e.g. ImageNet ConvNeXt weights the site
    placed there): tensors of equal shape are copied, an RGB stem is summed to the grey channel,
    and what still differs (the classifier head) keeps its random initialisation.

    Returns lines for the job log. Raises ``ValueError`` when the file does not fit the
    architecture at all (fewer than half of the tensors load).
    """
    source = _read_state(path)
    target = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    adapted: list[str] = []
    skipped: list[str] = []
    for name, value in target.items():
        candidate = source.get(name)
        if candidate is None:
            skipped.append(name)
        elif candidate.shape == value.shape:
            loaded[name] = candidate.to(value.dtype)
        elif (
            candidate.ndim == 4
            and value.ndim == 4
            and candidate.shape[0] == value.shape[0]
            and candidate.shape[2:] == value.shape[2:]
        ):
            loaded[name] = adapt_input_conv(config.in_chans, candidate, base_chans=candidate.shape[1]).to(value.dtype)
            adapted.append(name)
        else:
            skipped.append(name)
    if len(loaded) < len(target) / 2:
        raise ValueError(
            f"{path} does not fit {config.arch}: only {len(loaded)} of {len(target)} tensors have matching shapes"
        )
    model.load_state_dict(loaded, strict=False)
    lines = [f"Initialised {len(loaded)} of {len(target)} tensors from {path.name}"]
    if adapted:
        lines.append(f"Adapted to {config.in_chans} input channel(s): {', '.join(adapted)}")
    if skipped:
        lines.append(f"Kept the random initialisation of: {', '.join(skipped)}")
    return lines
