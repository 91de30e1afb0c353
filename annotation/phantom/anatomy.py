"""The coronary tree of a phantom patient, in 3D patient coordinates.

Coordinates are DICOM patient coordinates (LPS): +x towards the patient's left, +y posterior,
+z towards the head, in millimetres. The tree is modelled on an idealised heart: the ventricles
are a half-ellipsoid whose long axis runs from the base (the atrioventricular groove) forwards,
leftwards and down to the apex. Surface vessels are laid out in (s, phi) coordinates on that
ellipsoid, s from 0 at the base to 1 at the apex (s > 1 continues over the apex onto the inferior
wall) and phi the angle round the long axis (0 anterior, about +60 right, +120 inferior, 180
posterior, -120 left, -60 superior), so that the AV-groove vessels stay in the groove and the
interventricular ones run down the septum whatever the heart's size and tilt.

The whole model is translated so that the drawn artery sits near the isocentre, as an operator
pans the table to centre the artery being filmed; the chest landmarks in `HeartGeometry` move
with it, so the renderer can place the spine, lungs and catheter around the heart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from annotation.phantom.findings import AHA_SEGMENTS, Artery, Dominance, Lesion

#: Spacing of the centreline samples, mm: fine enough for the narrowest lesion.
POINT_SPACING_MM = 0.5


@dataclass(frozen=True)
class Branch:
    name: str  # e.g. "RCA", "conus", "AM1", "PDA", "PL", "LM", "LAD", "D1", "S1", "LCx", "OM1"
    points_mm: np.ndarray  # (N, 3) centreline, patient coordinates (LPS), mm
    radius_mm: np.ndarray  # (N,) lumen radius; 0 inside a total occlusion
    segments: np.ndarray  # (N,) AHA segment of each point, 0 outside the 15-segment model
    parent: int | None  # index of the parent branch in CoronaryTree.branches
    parent_point: int  # index in the parent's points where this branch leaves


@dataclass(frozen=True)
class HeartGeometry:
    """Landmarks the renderer needs around the tree: cardiac motion and the chest around it."""

    centre_mm: np.ndarray  # (3,) centre of the ventricles, the centre of systolic contraction
    base_mm: np.ndarray  # (3,) centre of the atrioventricular ring
    long_axis: np.ndarray  # (3,) unit vector, base to apex
    length_mm: float  # base to apex
    radius_mm: float  # ventricular radius at the base
    aortic_root_mm: np.ndarray  # (3,) centre of the aortic sinuses
    aortic_radius_mm: float
    ascending_axis: np.ndarray  # (3,) unit vector up the ascending aorta
    midline_x_mm: float  # x of the patient's midline (spine, sternum)
    spine_y_mm: float  # y of the vertebral bodies' centres
    scale: float  # heart (and chest) size relative to an average adult


@dataclass(frozen=True)
class CoronaryTree:
    artery: Artery
    branches: tuple[Branch, ...]
    ostium_mm: np.ndarray  # (3,)
    heart: HeartGeometry | None = field(default=None)

    def arc_length_from_ostium(self) -> list[np.ndarray]:
        """Per branch, the path length (mm) from the ostium to each point, through the parents."""
        lengths: list[np.ndarray] = []
        for branch in self.branches:
            steps = np.linalg.norm(np.diff(branch.points_mm, axis=0), axis=1)
            start = 0.0 if branch.parent is None else float(lengths[branch.parent][branch.parent_point])
            lengths.append(start + np.concatenate([[0.0], np.cumsum(steps)]))
        return lengths

    def branch_named(self, name: str) -> Branch:
        return next(branch for branch in self.branches if branch.name == name)


def segments_present(artery: Artery, dominance: Dominance) -> frozenset[int]:
    """The AHA segments this model draws for an artery: a lesion elsewhere cannot be placed.

    Segment 4 (PDA and posterolateral branches of the RCA) needs a right or co-dominant RCA,
    segment 15 (the LCx's PDA) a left-dominant circulation.
    """
    if artery is Artery.RCA:
        return frozenset({1, 2, 3} if dominance is Dominance.LEFT else {1, 2, 3, 4})
    return frozenset(range(5, 16) if dominance is Dominance.LEFT else range(5, 15))


# --- geometry helpers -----------------------------------------------------------------------------


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector, axis=-1, keepdims=True)


def catmull_rom(knots: np.ndarray, samples_per_span: int = 24) -> np.ndarray:
    """A dense curve through every knot (uniform Catmull-Rom), any number of columns."""
    knots = np.asarray(knots, dtype=float)
    if len(knots) == 2:
        t = np.linspace(0.0, 1.0, samples_per_span + 1)[:, None]
        return knots[0] * (1 - t) + knots[1] * t
    padded = np.vstack([2 * knots[0] - knots[1], knots, 2 * knots[-1] - knots[-2]])
    t = np.linspace(0.0, 1.0, samples_per_span, endpoint=False)[:, None]
    t2, t3 = t * t, t * t * t
    pieces = []
    for i in range(len(knots) - 1):
        p0, p1, p2, p3 = padded[i : i + 4]
        pieces.append(
            0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3)
        )
    pieces.append(knots[-1:])
    return np.vstack(pieces)


def resample_polyline(
    points: np.ndarray, spacing: float, extra: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a polyline to even arc-length spacing; `extra` (N,) is carried along."""
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    count = max(round(arc[-1] / spacing), 1) + 1
    where = np.linspace(0.0, arc[-1], count)
    out = np.column_stack([np.interp(where, arc, points[:, k]) for k in range(points.shape[1])])
    carried = np.interp(where, arc, extra) if extra is not None else np.zeros(count)
    return out, carried


def arc_length(points: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class _HeartShape:
    """The ventricular half-ellipsoid and the (s, phi, h) coordinates laid on it."""

    def __init__(self, long_axis: np.ndarray, length: float, radius: float, rv_bulge: float) -> None:
        self.e_l = long_axis
        anterior = np.array([0.0, -1.0, 0.0])
        # phi = 0 points to the anterior surface, phi = +90 to the right and inferior side.
        self.e_1 = _unit(anterior - anterior.dot(long_axis) * long_axis)
        self.e_2 = np.cross(long_axis, self.e_1)
        self.length = length
        self.radius = radius
        self.rv_bulge = rv_bulge
        self.base = -0.45 * length * long_axis  # the ventricles' centre is the origin

    def radial(self, phi_deg: np.ndarray) -> np.ndarray:
        phi = np.radians(phi_deg)[..., None]
        return np.cos(phi) * self.e_1 + np.sin(phi) * self.e_2

    def point(self, s: np.ndarray, phi_deg: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Surface point at (s, phi), lifted h mm along the outward normal (h < 0: in a groove)."""
        s = np.asarray(s, dtype=float)
        phi_deg = np.asarray(phi_deg, dtype=float)
        over_apex = s > 1.0
        s = np.where(over_apex, 2.0 - s, s)
        phi_deg = np.where(over_apex, phi_deg + 180.0, phi_deg)
        # The right ventricle makes the anterior-right side fuller than the left.
        radius = self.radius * (1.0 + self.rv_bulge * np.cos(np.radians(phi_deg - 40.0)))
        z = np.clip(s, -0.3, 1.0) * self.length
        rho = radius * np.sqrt(np.clip(1.0 - np.clip(s, 0.0, 1.0) ** 2, 0.0, 1.0))
        radial = self.radial(phi_deg)
        normal = _unit(
            radial * (rho / radius**2)[..., None] + self.e_l * (np.clip(z, 0, None) / self.length**2)[..., None]
        )
        return self.base + self.e_l * z[..., None] + radial * rho[..., None] + normal * np.asarray(h)[..., None]

    def outward(self, point: np.ndarray) -> np.ndarray:
        rel = point - self.base
        return _unit(rel - (rel @ self.e_l)[..., None] * self.e_l)


# --- the random patient ---------------------------------------------------------------------------


@dataclass
class _Draws:
    """Every random number one patient needs, drawn in a fixed order.

    Both arteries' numbers are drawn whichever artery is built, so two generators seeded alike
    give the same heart for the patient's LCA and RCA.
    """

    rng: np.random.Generator
    values: dict[str, float] = field(default_factory=dict)

    def uniform(self, key: str, low: float, high: float) -> float:
        self.values[key] = float(self.rng.uniform(low, high))
        return self.values[key]

    def normal(self, key: str, sd: float) -> float:
        self.values[key] = float(self.rng.normal(0.0, sd))
        return self.values[key]


_TWIGS = 12
_BRANCH_KEYS = [
    "RCA",
    "conus",
    "AM1",
    "AM2",
    "RV",
    "PDA",
    "PL",
    "LM",
    "LAD",
    "D1",
    "D2",
    "S1",
    "S2",
    "S3",
    "S4",
    "LCx",
    "OM1",
    "OM2",
]  # tortuosity draws (a left-dominant LCx's PL and PDA share the RCA's "PL" and "PDA" draws)


def _draw_patient(rng: np.random.Generator) -> tuple[_Draws, dict[str, np.ndarray]]:
    draws = _Draws(rng)
    draws.uniform("scale", 0.88, 1.12)
    draws.uniform("azimuth", 32.0, 50.0)  # long axis, degrees left of the sagittal plane
    draws.uniform("tilt", 22.0, 40.0)  # long axis, degrees below the horizontal
    draws.uniform("rv_bulge", 0.05, 0.14)
    draws.uniform("calibre", 0.9, 1.1)
    draws.uniform("tortuosity", 0.4, 1.2)
    draws.uniform("lm_length", 7.0, 15.0)
    draws.normal("pan_x", 6.0)
    draws.normal("pan_y", 6.0)
    draws.normal("pan_z", 6.0)
    for key in ("rca_prox", "am1", "am2", "rv", "crux", "pda_len", "pl_len", "conus_len"):
        draws.uniform(key, -1.0, 1.0)
    for key in ("lad_phi", "lad_wrap", "d1_at", "d2_at", "d1_angle", "d2_angle", "d1_len", "d2_len"):
        draws.uniform(key, -1.0, 1.0)
    for key in ("lcx_end", "om1_at", "om2_at", "om1_len", "om2_len", "lm_phi", "septal_len", "septal_tilt"):
        draws.uniform(key, -1.0, 1.0)
    # Three sine components of wiggle in two directions per branch: amplitude, wavelength, phase.
    wiggles = {name: rng.uniform(0.0, 1.0, size=(2, 3, 3)) for name in _BRANCH_KEYS}
    # Small unnamed side branches (RV twigs, atrial and SA-node branches, small diagonals and
    # marginals): parent, place along it, side, angle, length, calibre; and their wiggles.
    for artery in ("rca", "lca"):
        wiggles[f"{artery}_twigs"] = rng.uniform(0.0, 1.0, size=(_TWIGS, 6))
        for number in range(_TWIGS):
            wiggles[f"{artery}_twig{number}"] = rng.uniform(0.0, 1.0, size=(2, 3, 3))
    return draws, wiggles


@dataclass
class _Raw:
    name: str
    points: np.ndarray
    radius: np.ndarray
    segments: np.ndarray
    parent: int | None
    parent_point: int
    phi: np.ndarray  # angle round the long axis of each point (nan where not on the surface)


class _Builder:
    def __init__(self, draws: _Draws, wiggles: dict[str, np.ndarray], dominance: Dominance) -> None:
        v = draws.values
        self.v = v
        self.wiggles = wiggles
        self.dominance = dominance
        self.scale = v["scale"]
        azimuth, tilt = np.radians(v["azimuth"]), np.radians(v["tilt"])
        long_axis = np.array([np.sin(azimuth) * np.cos(tilt), -np.cos(azimuth) * np.cos(tilt), -np.sin(tilt)])
        self.shape = _HeartShape(long_axis, 80.0 * self.scale, 37.0 * self.scale, v["rv_bulge"])
        self.calibre = v["calibre"]
        self.tortuosity = v["tortuosity"]
        self.branches: list[_Raw] = []
        # The LM bifurcates at the top of the anterior interventricular groove, close to the root.
        lm_phi = -52.0 + 6.0 * v["lm_phi"]
        self.bifurcation = self.shape.point(np.array(-0.04), np.array(lm_phi), np.array(-5.0 * self.scale))
        self.lm_phi = lm_phi
        # The aortic root sits at the front of the base, between the top of the anterior
        # interventricular groove (LM bifurcation) and the right AV groove (RCA).
        self.aortic_radius = 13.0 * self.scale
        root_at_base = self.shape.point(np.array(-0.1), np.array(-8.0 + 4.0 * v["lm_phi"]), np.array(0.0))
        self.aortic_root = self.shape.base + (root_at_base - self.shape.base) * (0.62 - 0.012 * v["lm_length"])
        self.lm_ostium = self.aortic_root + _unit(self.bifurcation - self.aortic_root) * self.aortic_radius
        rca_entry = self.shape.point(np.array(-0.06), np.array(20.0), np.array(-2.0))
        towards = _unit(_unit(rca_entry - self.aortic_root) + np.array([0.0, -0.6, 0.25]))
        self.rca_ostium = self.aortic_root + towards * self.aortic_radius

    def heart(self) -> HeartGeometry:
        return HeartGeometry(
            centre_mm=np.zeros(3),
            base_mm=self.shape.base.copy(),
            long_axis=self.shape.e_l.copy(),
            length_mm=self.shape.length,
            radius_mm=self.shape.radius,
            aortic_root_mm=self.aortic_root.copy(),
            aortic_radius_mm=self.aortic_radius,
            ascending_axis=_unit(np.array([-0.3, -0.25, 1.0])),
            midline_x_mm=-22.0 * self.scale,
            spine_y_mm=88.0 * self.scale,
            scale=self.scale,
        )

    # -- building blocks

    def _wiggle(self, name: str, points: np.ndarray, amplitude_mm: float) -> np.ndarray:
        """Tortuosity: smooth sideways meanders that grow in from the branch's origin."""
        if len(points) < 3:
            return points
        arc = arc_length(points)
        tangent = _unit(np.gradient(points, axis=0))
        outward = self.shape.outward(points)
        side = _unit(np.cross(tangent, outward) + 1e-9)
        lift = _unit(np.cross(side, tangent) + 1e-9)
        table = self.wiggles[name]
        offsets = np.zeros((len(points), 2))
        for direction in range(2):
            for component in range(3):
                amp, wave, phase = table[direction, component]
                wavelength = 14.0 + 30.0 * wave
                weight = (1.0 if direction == 0 else 0.4) * amplitude_mm * self.tortuosity * (0.3 + 0.7 * amp)
                offsets[:, direction] += weight * np.sin(2 * np.pi * (arc / wavelength + phase)) / 1.6
        offsets *= _smoothstep(arc / 8.0)[:, None]
        return points + offsets[:, :1] * side + offsets[:, 1:] * lift

    def _surface_path(self, knots: Sequence[tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
        dense = catmull_rom(np.array(knots, dtype=float), 40)
        points = self.shape.point(dense[:, 0], dense[:, 1], dense[:, 2])
        return resample_polyline(points, POINT_SPACING_MM, dense[:, 1])

    def add(
        self,
        name: str,
        points: np.ndarray,
        phi: np.ndarray,
        radius: tuple[float, float],
        parent: int | None = None,
        parent_point: int = 0,
        wiggle_mm: float = 1.2,
        segment: int = 0,
    ) -> int:
        """Add a branch: tortuosity, attachment to the parent, and a tapering lumen."""
        points = self._wiggle(name, points, wiggle_mm)
        if parent is not None:
            # The branch must leave exactly from its parent's (already meandering) centreline.
            anchor = self.branches[parent].points[parent_point]
            fade = 1.0 - _smoothstep(arc_length(points) / 12.0)
            points = points + (anchor - points[0]) * fade[:, None]
            points, phi = resample_polyline(points, POINT_SPACING_MM, phi)
        arc = arc_length(points)
        start, end = radius[0] * self.calibre, radius[1] * self.calibre
        fraction = arc / max(arc[-1], 1e-6)
        lumen = start * (end / start) ** fraction
        lumen *= 1.0 - 0.35 * _smoothstep((fraction - 0.85) / 0.15)  # the last run thins out
        self.branches.append(
            _Raw(name, points, lumen, np.full(len(points), segment), parent, parent_point, np.asarray(phi, float))
        )
        return len(self.branches) - 1

    def nearest(self, branch: int, arc_mm: float) -> int:
        arc = arc_length(self.branches[branch].points)
        return int(np.clip(np.searchsorted(arc, arc_mm), 0, len(arc) - 1))

    def at_phi(self, branch: int, phi_deg: float) -> int:
        """Index of the first point of a groove branch that reaches angle phi (either direction)."""
        phi = self.branches[branch].phi
        sign = np.sign(np.nanmean(np.diff(phi))) or 1.0
        hits = np.nonzero(np.nan_to_num(sign * (phi - phi_deg), nan=-np.inf) >= 0)[0]
        return int(hits[0]) if len(hits) else len(phi) - 1

    # -- the arteries

    def build_rca(self) -> None:
        v, k = self.v, self.scale
        left = self.dominance is Dominance.LEFT
        crux_phi = 158.0 + 6.0 * v["crux"]
        end_phi = 112.0 + 12.0 * v["crux"] if left else crux_phi
        # Out of the right sinus, forwards and to the right, then down into the right AV groove.
        proximal = np.array([self.rca_ostium, self.rca_ostium + k * np.array([-6.0, -7.0, -1.0 + 2.0 * v["rca_prox"]])])
        groove_knots = [(-0.06, 18.0 + 6 * v["rca_prox"], -2.0)]
        phi = 45.0
        while phi < end_phi - 1:
            groove_knots.append((0.0, phi, -2.0))
            phi += 30.0
        groove_knots.append((0.02, end_phi, -2.0))
        groove, groove_phi = self._surface_path(groove_knots)
        points = np.vstack([catmull_rom(np.vstack([proximal, groove[:2]]), 20)[:-1], groove])
        phis = np.concatenate([np.full(len(points) - len(groove), np.nan), groove_phi])
        points, phis = resample_polyline(points, POINT_SPACING_MM, np.nan_to_num(phis, nan=0.0))
        phis[phis == 0.0] = np.nan
        rca = self.add("RCA", points, phis, (1.3, 0.7) if left else (1.6, 1.0), wiggle_mm=1.3)
        acute = self.at_phi(rca, 88.0)
        arc = arc_length(self.branches[rca].points)
        segments = np.where(arc < arc[acute] / 2, 1, np.where(arc < arc[acute], 2, 3))
        self.branches[rca].segments = segments

        # Conus: the first branch, forwards and up over the right ventricular outflow tract.
        conus_at = self.nearest(rca, 6.0)
        start = self.branches[rca].points[conus_at]
        conus_len = (26.0 + 8.0 * v["conus_len"]) * k
        conus_knots = np.array(
            [start, start + k * np.array([2.0, -9.0, 4.0]), start + k * np.array([10.0, -16.0, 8.0])], float
        )
        conus_points = resample_polyline(catmull_rom(conus_knots), POINT_SPACING_MM)[0]
        conus_points = conus_points[arc_length(conus_points) <= conus_len]
        self.add("conus", conus_points, np.full(len(conus_points), np.nan), (0.65, 0.35), rca, conus_at, 0.8)

        # Acute marginal branches run over the right ventricle towards the apex.
        for name, key, phi0, reach in (("AM1", "am1", 62.0, 0.42), ("AM2", "am2", 95.0, 0.36)):
            at = self.at_phi(rca, phi0 + 6 * v[key])
            origin_phi = float(self.branches[rca].phi[at])
            knots = [(0.0, origin_phi, -1.0), (0.2, origin_phi - 8, 1.0), (reach + 0.1 * v[key], origin_phi - 18, 1.0)]
            points, phis = self._surface_path(knots)
            self.add(name, points, phis, (0.75, 0.35), rca, at, 1.0)
        at = self.at_phi(rca, 35.0 + 5 * v["rv"])
        origin_phi = float(self.branches[rca].phi[at])
        points, phis = self._surface_path(
            [(0.0, origin_phi, -1.0), (0.14, origin_phi - 10, 1.0), (0.24, origin_phi - 16, 1)]
        )
        self.add("RV", points, phis, (0.6, 0.35), rca, at, 0.8)

        if left:
            self.add_twigs("rca", [rca])
            return
        # At the crux the dominant RCA gives the posterior descending artery and posterolateral branches.
        crux = len(self.branches[rca].points) - 1
        pda_reach = (0.62 if self.dominance is Dominance.RIGHT else 0.45) + 0.1 * v["pda_len"]
        points, phis = self._surface_path(
            [(0.02, end_phi, -2.0), (0.12, end_phi - 4, 0.5), (pda_reach, end_phi - 8, 1.0)]
        )
        self.add("PDA", points, phis, (1.0, 0.45), rca, crux, 1.2, segment=4)
        pl_turn = end_phi + (40.0 if self.dominance is Dominance.RIGHT else 18.0) + 8 * v["pl_len"]
        points, phis = self._surface_path(
            [(0.02, end_phi, -2.0), (0.03, (end_phi + pl_turn) / 2, -2.0), (0.05, pl_turn, -1.0), (0.3, pl_turn + 8, 1)]
        )
        self.add("PL", points, phis, (0.9, 0.4), rca, crux, 1.2, segment=4)
        self.add_twigs("rca", [rca, rca, rca, len(self.branches) - 2])

    def build_lca(self) -> None:
        v, k = self.v, self.scale
        lm_points = resample_polyline(
            catmull_rom(np.array([self.lm_ostium, (self.lm_ostium + self.bifurcation) / 2, self.bifurcation])),
            POINT_SPACING_MM,
        )[0]
        lm = self.add("LM", lm_points, np.full(len(lm_points), np.nan), (2.0, 1.85), wiggle_mm=0.2, segment=5)
        end = len(self.branches[lm].points) - 1

        lad_phi = -38.0 + 6.0 * v["lad_phi"]
        wrap = 1.10 + 0.06 * v["lad_wrap"]
        lad_knots = [
            (-0.04, self.lm_phi, -5.0 * k),
            (0.06, lad_phi - 4, 0.5),
            (0.35, lad_phi, 1.5),
            (0.65, lad_phi + 4, 1.5),
            (0.92, lad_phi + 8, 1.5),
            (wrap, lad_phi + 10, 1.0),
        ]
        points, phis = self._surface_path(lad_knots)
        lad = self.add("LAD", points, phis, (1.55, 0.5), lm, end, 1.3)
        lad_arc = arc_length(self.branches[lad].points)
        d1_at = self.nearest(lad, (22.0 + 6.0 * v["d1_at"]) * k)
        d2_at = self.nearest(lad, (52.0 + 8.0 * v["d2_at"]) * k)
        self.branches[lad].segments = np.where(lad_arc < lad_arc[d1_at], 6, np.where(lad_arc < lad_arc[d2_at], 7, 8))
        for name, at, key, segment, calibre in (("D1", d1_at, "d1", 9, 1.15), ("D2", d2_at, "d2", 10, 0.95)):
            s0 = self._s_of(self.branches[lad].points[at])
            phi0 = float(self.branches[lad].phi[at])
            spread = 38.0 + 10.0 * v[f"{key}_angle"]
            reach = 0.42 + 0.1 * v[f"{key}_len"] - (0.1 if segment == 10 else 0.0)
            knots = [(s0, phi0, 1.5), (s0 + reach * 0.4, phi0 - spread * 0.55, 1.5), (s0 + reach, phi0 - spread, 1.5)]
            points, phis = self._surface_path(knots)
            self.add(name, points, phis, (calibre, 0.45), lad, at, 1.2, segment=segment)
        # Septal perforators dive from the LAD into the septum, towards the long axis and the apex.
        for number, fraction in enumerate((0.14, 0.3, 0.45, 0.6), start=1):
            at = self.nearest(lad, fraction * lad_arc[-1])
            origin = self.branches[lad].points[at]
            inward = -self.shape.outward(origin)
            length = (30.0 - 4.0 * number + 6.0 * v["septal_len"]) * k
            direction = _unit(inward * 0.8 + self.shape.e_l * (0.55 + 0.15 * v["septal_tilt"]))
            bend = _unit(np.cross(direction, self.shape.e_l) + 1e-9)
            septal = np.array([origin, origin + direction * length * 0.5, origin + direction * length + bend * 3.0])
            points = resample_polyline(catmull_rom(septal), POINT_SPACING_MM)[0]
            self.add(f"S{number}", points, np.full(len(points), np.nan), (0.6, 0.3), lad, at, 0.6)

        left = self.dominance is Dominance.LEFT
        lcx_end = {Dominance.RIGHT: -138.0, Dominance.CO: -178.0, Dominance.LEFT: -198.0}[self.dominance]
        lcx_end += 6.0 * v["lcx_end"]
        knots = [(-0.04, self.lm_phi, -5.0 * k), (-0.02, self.lm_phi - 18, -2.5)]
        phi = self.lm_phi - 45
        while phi > lcx_end + 1:
            knots.append((0.0, phi, -2.0))
            phi -= 30
        knots.append((0.01, lcx_end, -2.0))
        points, phis = self._surface_path(knots)
        lcx = self.add("LCx", points, phis, (1.6, 0.95) if left else (1.45, 0.75), lm, end, 1.2)
        om1_at = self.at_phi(lcx, -92.0 + 6 * v["om1_at"])
        lcx_arc = arc_length(self.branches[lcx].points)
        self.branches[lcx].segments = np.where(lcx_arc < lcx_arc[om1_at], 11, 13)
        for name, at, key, segment in (
            ("OM1", om1_at, "om1", 12),
            ("OM2", self.at_phi(lcx, -122.0 + 6 * v["om2_at"]), "om2", 12),
        ):
            phi0 = float(self.branches[lcx].phi[at])
            reach = 0.62 + 0.1 * v[f"{key}_len"] - (0.12 if name == "OM2" else 0.0)
            knots = [(0.0, phi0, -1.5), (0.2, phi0 - 8, 1.0), (reach, phi0 - 14, 1.5)]
            points, phis = self._surface_path(knots)
            self.add(name, points, phis, (1.1 if name == "OM1" else 0.95, 0.45), lcx, at, 1.3, segment=segment)
        # The LCx ends as a posterolateral branch; in a left-dominant heart it also gives the PDA.
        end_at = len(self.branches[lcx].points) - 1
        pl_at = end_at if not left else self.at_phi(lcx, lcx_end + 28.0)
        phi0 = float(self.branches[lcx].phi[pl_at])
        points, phis = self._surface_path([(0.01, phi0, -2.0), (0.15, phi0 - 6, 0.5), (0.38, phi0 - 10, 1.0)])
        self.add("PL", points, phis, (0.9 if left else 0.75, 0.4), lcx, pl_at, 1.2, segment=14)
        if left:
            points, phis = self._surface_path(
                [(0.01, lcx_end, -2.0), (0.12, lcx_end - 4, 0.5), (0.62, lcx_end - 8, 1.0)]
            )
            self.add("PDA", points, phis, (1.0, 0.45), lcx, end_at, 1.2, segment=15)
        named = {branch.name: index for index, branch in enumerate(self.branches)}
        self.add_twigs("lca", [lad, lad, lcx, named["D1"], named["OM1"]])

    def add_twigs(self, artery: str, parents: Sequence[int]) -> None:
        """Small side branches along the given parents, running over the heart's surface."""
        table = self.wiggles[f"{artery}_twigs"]
        for number, (which, where, side, angle, length, calibre) in enumerate(table):
            parent = parents[int(which * len(parents)) % len(parents)]
            carrier = self.branches[parent]
            arc = arc_length(carrier.points)
            at = self.nearest(parent, (0.08 + 0.8 * where) * arc[-1])
            if carrier.radius[at] < 0.6:
                continue
            origin = carrier.points[at]
            ahead = carrier.points[min(at + 4, len(arc) - 1)] - carrier.points[max(at - 4, 0)]
            normal = self.shape.outward(origin)
            tangent = _unit(ahead - ahead.dot(normal) * normal)
            across = np.cross(normal, tangent) * (1.0 if side > 0.5 else -1.0)
            turn = np.radians(35.0 + 45.0 * angle)
            direction = tangent * np.cos(turn) + across * np.sin(turn)
            reach = (6.0 + 14.0 * length) * self.scale
            # Twigs curl: the heading turns steadily one way as they run.
            heading = np.linspace(0.0, (angle - 0.5) * 1.6, 40)[:, None]
            steps = (direction * np.cos(heading) + np.cross(normal, direction) * np.sin(heading)) * (reach / 39)
            straight = origin + np.vstack([np.zeros((1, 3)), np.cumsum(steps[1:], axis=0)])
            # Lay the twig back onto the surface (it runs in the epicardium, not off into space).
            rel = straight - self.shape.base
            s = np.clip(rel @ self.shape.e_l / self.shape.length, -0.2, 0.97)
            phi = np.degrees(np.arctan2(rel @ self.shape.e_2, rel @ self.shape.e_1))
            points = self.shape.point(s, phi, np.full(len(s), 1.0))
            points = resample_polyline(np.vstack([origin, points[1:]]), POINT_SPACING_MM)[0]
            radius = 0.3 + 0.25 * calibre
            name = f"{carrier.name}-sb{number + 1}"
            self.wiggles[name] = self.wiggles[f"{artery}_twig{number}"]
            self.add(name, points, np.full(len(points), np.nan), (radius, 0.2), parent, at, 1.2)

    def _s_of(self, point: np.ndarray) -> float:
        return float((point - self.shape.base) @ self.shape.e_l / self.shape.length)


def _narrow_at_lesion(branch: _Raw, lesion: Lesion) -> None:
    """Narrow the lumen smoothly over the lesion's length, tightest at its position.

    A total occlusion has no lumen over its middle third, with tapering stumps either side.
    """
    where = np.nonzero(branch.segments == lesion.segment)[0]
    arc = arc_length(branch.points)
    start, end = arc[where[0]], arc[where[-1]]
    centre = start + lesion.position * (end - start)
    half = max(lesion.length_mm, 1.0) / 2
    x = np.abs(arc - centre) / half
    bump = np.where(x < 1.0, 0.5 * (1.0 + np.cos(np.pi * np.clip(x, 0.0, 1.0))), 0.0)
    factor = 1.0 - lesion.stenosis_pct / 100.0 * bump
    if lesion.occluded:
        factor[x < 1.0 / 3.0] = 0.0
    branch.radius = branch.radius * factor


def build_coronary_tree(
    artery: Artery, dominance: Dominance, lesions: Sequence[Lesion], rng: np.random.Generator
) -> CoronaryTree:
    """Draw one patient's heart and build the tree of `artery`, narrowed at its lesions.

    Lesions of the other artery are ignored (pass the exam's whole list); a lesion in a segment
    this anatomy lacks (see `segments_present`) is an error. A lesion lies on the first branch that
    carries its segment (segment 4 on the PDA, 12 on OM1).
    """
    draws, wiggles = _draw_patient(rng)
    builder = _Builder(draws, wiggles, dominance)
    if artery is Artery.RCA:
        builder.build_rca()
        ostium = builder.rca_ostium
    else:
        builder.build_lca()
        ostium = builder.lm_ostium
    for lesion in lesions:
        if lesion.artery is not artery:
            continue
        if lesion.segment not in segments_present(artery, dominance):
            name = AHA_SEGMENTS[lesion.segment][2]
            raise ValueError(f"segment {lesion.segment} ({name}) is not part of a {dominance} {artery}")
        carrier = next(b for b in builder.branches if np.any(b.segments == lesion.segment))
        _narrow_at_lesion(carrier, lesion)

    # Pan the table so the artery sits near the isocentre, with a little operator-to-operator scatter.
    everything = np.vstack([b.points for b in builder.branches])
    centre = (everything.min(axis=0) + everything.max(axis=0)) / 2
    v = draws.values
    shift = -centre + np.array([v["pan_x"], v["pan_y"], v["pan_z"]])
    heart = builder.heart()
    heart = replace(
        heart,
        centre_mm=heart.centre_mm + shift,
        base_mm=heart.base_mm + shift,
        aortic_root_mm=heart.aortic_root_mm + shift,
        midline_x_mm=heart.midline_x_mm + shift[0],
        spine_y_mm=heart.spine_y_mm + shift[1],
    )
    branches = tuple(
        Branch(
            name=b.name,
            points_mm=b.points + shift,
            radius_mm=b.radius,
            segments=b.segments.astype(np.int8),
            parent=b.parent,
            parent_point=b.parent_point,
        )
        for b in builder.branches
    )
    return CoronaryTree(artery=artery, branches=branches, ostium_mm=ostium + shift, heart=heart)
