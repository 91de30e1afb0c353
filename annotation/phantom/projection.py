"""C-arm projection geometry, following the DICOM XA positioner conventions.

At 0/0 (AP) the X-ray source is under the table and the detector above the patient's chest; the
image is shown as seen from the detector side facing the patient: the patient's left on the
image's right, the head at the top. PositionerPrimaryAngle rotates the detector towards the
patient's left (LAO, > 0) or right (RAO, < 0) about the head-foot axis; PositionerSecondaryAngle
then tilts it towards the head (cranial, > 0) or feet (caudal, < 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CArmView:
    name: str  # e.g. "RAO 30 / CAU 25"
    primary_deg: float  # PositionerPrimaryAngle: > 0 LAO, < 0 RAO
    secondary_deg: float  # PositionerSecondaryAngle: > 0 cranial, < 0 caudal


def view_name(primary_deg: float, secondary_deg: float) -> str:
    """The way a cath lab writes an angle pair, e.g. "LAO 45 / CAU 30", "AP / CRA 35"."""
    primary = "AP" if round(primary_deg) == 0 else f"{'LAO' if primary_deg > 0 else 'RAO'} {abs(round(primary_deg))}"
    if round(secondary_deg) == 0:
        return primary
    return f"{primary} / {'CRA' if secondary_deg > 0 else 'CAU'} {abs(round(secondary_deg))}"


def _view(primary: float, secondary: float) -> CArmView:
    return CArmView(view_name(primary, secondary), primary, secondary)


#: The standard left coronary views: RAO caudal (LCx, OMs), RAO cranial (mid-distal LAD),
#: LAO cranial (LAD and diagonals split), LAO caudal "spider" (the LM bifurcation), AP cranial.
LCA_VIEWS: tuple[CArmView, ...] = (_view(-30, -25), _view(-30, 30), _view(45, 25), _view(45, -30), _view(0, 35))
#: The standard right coronary views: LAO ("C"), RAO ("L"), LAO cranial (the crux and PDA).
RCA_VIEWS: tuple[CArmView, ...] = (_view(45, 0), _view(-30, 0), _view(30, 25))


def vary_view(view: CArmView, rng: np.random.Generator, spread_deg: float = 6.0) -> CArmView:
    """The same standard view as an operator actually sets it: each angle off by a few degrees."""
    primary = float(np.round(view.primary_deg + rng.uniform(-spread_deg, spread_deg)))
    secondary = float(np.round(view.secondary_deg + rng.uniform(-spread_deg, spread_deg)))
    return _view(primary, secondary)


@dataclass(frozen=True)
class Geometry:
    sid_mm: float = 1000.0  # source to detector (DistanceSourceToDetector)
    sod_mm: float = 750.0  # source to isocentre (DistanceSourceToPatient)
    detector_px: int = 512
    detector_pixel_mm: float = 0.3  # ImagerPixelSpacing at the detector

    @property
    def centre_px(self) -> float:
        return (self.detector_px - 1) / 2.0

    @property
    def isocentre_px_per_mm(self) -> float:
        """Image pixels per millimetre of anatomy at the isocentre."""
        return self.sid_mm / self.sod_mm / self.detector_pixel_mm


def view_axes(view: CArmView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beam, column, row) unit vectors in patient coordinates.

    beam points from the source through the isocentre to the detector; column and row are the
    directions in which image columns and rows increase.
    """
    a, b = np.radians(view.primary_deg), np.radians(view.secondary_deg)
    beam = np.array([np.sin(a) * np.cos(b), -np.cos(a) * np.cos(b), np.sin(b)])
    column = np.array([np.cos(a), np.sin(a), 0.0])
    row = np.cross(column, beam)
    return beam, column, row


def source_position(view: CArmView, geometry: Geometry) -> np.ndarray:
    return -view_axes(view)[0] * geometry.sod_mm


def project(points_mm: np.ndarray, view: CArmView, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) patient mm -> ((N, 2) detector pixel coordinates (col, row), (N,) magnification).

    Perspective from a point source: magnification is SID over the point's depth along the beam,
    so anatomy nearer the source (further from the detector) looks bigger.
    """
    points = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    beam, column, row = view_axes(view)
    relative = points + beam * geometry.sod_mm  # from the source
    magnification = geometry.sid_mm / (relative @ beam)
    scale = magnification / geometry.detector_pixel_mm
    pixels = np.column_stack([(relative @ column) * scale, (relative @ row) * scale]) + geometry.centre_px
    return pixels, magnification


def detector_rays(
    view: CArmView, geometry: Geometry, size: int, margin_px: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The source and a (size, size, 3) grid of unit ray directions covering the detector.

    The grid samples the detector (plus `margin_px` detector pixels each side) at `size` points
    per side, for rendering smooth anatomy at a lower resolution than the image.
    """
    beam, column, row = view_axes(view)
    half = (geometry.detector_px / 2.0 + margin_px) * geometry.detector_pixel_mm
    ticks = (np.arange(size) + 0.5) / size * 2 * half - half
    rows, cols = np.meshgrid(ticks, ticks, indexing="ij")
    targets = beam * geometry.sid_mm + cols[..., None] * column + rows[..., None] * row
    return source_position(view, geometry), targets / np.linalg.norm(targets, axis=-1, keepdims=True)
