"""A contact sheet of phantom cines: each standard view at early, peak and late contrast.

It is how the phantom is judged by eye: a cardiologist should name the artery and the projection
of every row. With a real cine beside it (`real=`), it is for one's own comparison only: that
version holds real pixels and must never be saved into the repository or the docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from annotation.phantom.anatomy import build_coronary_tree
from annotation.phantom.findings import Artery, Dominance, Lesion
from annotation.phantom.projection import LCA_VIEWS, RCA_VIEWS, Geometry
from annotation.phantom.rendering import FrameTruth, LoopSpec, render_loop

PHASES = ("early", "peak", "late")

#: The demo patient of the montage: right dominant, a tight mid-RCA and a mid-LAD lesion.
MONTAGE_LESIONS = (
    Lesion(segment=2, stenosis_pct=90, length_mm=8.0, position=0.5, culprit=True),
    Lesion(segment=7, stenosis_pct=75, length_mm=10.0, position=0.4),
)


@dataclass(frozen=True)
class Tile:
    image: np.ndarray  # float (H, W) in [0, 1]
    label: str


def pick_phases(truths: list[FrameTruth]) -> tuple[int, int, int]:
    """Frame indices of early filling, the sharpest fully filled frame, and wash-out."""
    filled = np.array([truth.opacified_fraction for truth in truths])
    concentration = np.array([truth.mean_concentration for truth in truths])
    sharpness = np.array([truth.sharpness for truth in truths])
    top = filled.max()
    early = int(np.argmax(filled >= 0.35 * top)) if top > 0 else 0
    candidates = np.nonzero(filled >= 0.95 * top)[0]
    peak = int(candidates[np.argmax(sharpness[candidates])]) if len(candidates) else len(truths) // 2
    fading = np.nonzero((np.arange(len(truths)) > peak) & (concentration <= 0.4 * concentration.max()))[0]
    late = int(fading[0]) if len(fading) else len(truths) - 1
    return early, peak, late


def phantom_tiles(seed: int = 0) -> list[list[Tile]]:
    """One row per standard view (the LCA's, then the RCA's) of one phantom patient."""
    rows: list[list[Tile]] = []
    for artery, views in ((Artery.LCA, LCA_VIEWS), (Artery.RCA, RCA_VIEWS)):
        # A generator seeded alike for both arteries: one heart for the patient.
        tree = build_coronary_tree(artery, Dominance.RIGHT, MONTAGE_LESIONS, np.random.default_rng(seed))
        for number, view in enumerate(views):
            spec = LoopSpec(
                view=view,
                geometry=Geometry(),
                frames=66,
                frame_rate=15.0,
                heart_rate_bpm=68.0,
                injection_start_s=0.6,
                flow_speed_mm_s=170.0,
                plateau_s=1.6,
                washout_s=1.2,
                seed=seed,
            )
            frames, truths = [], []
            for frame, truth in render_loop(tree, spec, np.random.default_rng([seed, number, len(rows)])):
                frames.append(frame)
                truths.append(truth)
            rows.append(
                [
                    Tile(frames[i], f"{artery} {view.name} · {phase}")
                    for i, phase in zip(pick_phases(truths), PHASES, strict=True)
                ]
            )
    return rows


def real_tiles(path: Path) -> list[Tile]:
    """Early, peak and late frames of a real cine, chosen from its per-frame mean intensity."""
    import pydicom  # the phantom itself never needs it

    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array.astype(np.float32)
    if pixels.ndim == 2:
        pixels = pixels[None]
    pixels /= max(float(pixels.max()), 1.0)
    # Contrast shows as pixels that darken against the first frame, once each frame's overall
    # brightness (the system's exposure control) is evened out.
    inside = pixels.min(axis=0) > 0.06
    rows, columns = pixels.shape[1:]
    inside[: rows // 5] = inside[-rows // 5 :] = False  # the catheter and the field's edges move
    inside[:, : columns // 5] = inside[:, -columns // 5 :] = False
    levels = np.median(pixels[:, inside], axis=1)
    darkened = (pixels[0][inside] / levels[0])[None] - pixels[:, inside] / levels[:, None]
    filling = np.mean(darkened > 0.25, axis=1)
    early = int(np.argmax(filling >= 0.3 * filling.max()))
    peak = int(np.argmax(filling >= 0.75 * filling.max()))
    late = len(pixels) - 1
    angles = f"{dataset.get('PositionerPrimaryAngle', '?')}/{dataset.get('PositionerSecondaryAngle', '?')}"
    return [
        Tile(pixels[i], f"REAL {path.name} {angles} · {phase} (frame {i})")
        for i, phase in zip((early, peak, late), PHASES, strict=True)
    ]


def compose(rows: list[list[Tile]], tile_px: int = 256) -> Image.Image:
    """Grid of the tiles, each resized to tile_px and labelled in its top-left corner."""
    columns = max(len(row) for row in rows)
    sheet = Image.new("L", (columns * tile_px, len(rows) * tile_px), 0)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(tile_px // 20, 10))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            image = Image.fromarray((np.clip(tile.image, 0, 1) * 255).astype(np.uint8))
            image = image.resize((tile_px, tile_px), Image.Resampling.LANCZOS)
            sheet.paste(image, (c * tile_px, r * tile_px))
            draw.text(
                (c * tile_px + 4, r * tile_px + 3), tile.label, fill=255, font=font, stroke_width=2, stroke_fill=0
            )
    return sheet


def build_montage(seed: int = 0, real: Path | None = None, tile_px: int = 256) -> Image.Image:
    rows = phantom_tiles(seed)
    if real is not None:
        rows.append(real_tiles(real))
    return compose(rows, tile_px)
