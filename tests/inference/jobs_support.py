"""Runners for the job-system tests: small, deterministic, and leaving traces to check.

Registered by each test through the ``job_runners`` fixture (an empty registry of the test's
own), and by ``slow_job_worker.py`` in a process of its own.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from inference.jobs import JobContext, register_runner
from inference.models import JobKind

#: The exclusive key of the product's training runner: one training job at a time.
TRAINING_KEY = "train:keyframe_cnn"


class StepParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(3, ge=1, le=1000)
    # Raise at this step on a first run, as a worker that loses its GPU would; a resumed run
    # (which starts from the checkpoint) goes through.
    fail_at: int | None = None


def step_runner(ctx: JobContext) -> dict[str, Any]:
    """Counts ``steps`` steps, checkpointing the last one done in ``checkpoint_dir/last_step``,
    and starts from that checkpoint when it finds one."""
    params = ctx.parameters
    assert isinstance(params, StepParameters)
    checkpoint = ctx.checkpoint_dir / "last_step"
    start = int(checkpoint.read_text()) if checkpoint.exists() else 0
    ctx.log(f"starting at step {start}")
    for step in range(start, params.steps):
        if step == params.fail_at and start == 0:
            raise RuntimeError(f"the worker lost its GPU at step {step}")
        ctx.progress(step / params.steps, f"step {step + 1} of {params.steps}", metrics={"last_step": step + 1})
        checkpoint.write_text(str(step + 1))
        ctx.log(f"step {step + 1} done")
    return {"steps": params.steps, "resumed_at_step": start, "checkpoint_dir": str(ctx.checkpoint_dir)}


def register_step_runners() -> None:
    """The step runner for both kinds: pre-labelling without a key, training with the key."""
    register_runner(JobKind.PRELABEL, StepParameters, replace=True)(step_runner)
    register_runner(JobKind.TRAIN_KEYFRAME, StepParameters, exclusive_key=TRAINING_KEY, replace=True)(step_runner)
