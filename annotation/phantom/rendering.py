"""X-ray cine loops of a phantom coronary tree: the acquisition physics, frame by frame.

Every frame is built in attenuation units (the exponent of Beer-Lambert, already scaled to what a
cath-lab display shows) and then exposed, with quantum noise, through the collimated field:

- the chest (soft tissue, lungs, heart shadow, diaphragm, spine, ribs, ECG electrodes) is a static
  background computed once per loop by casting rays through simple solids on a grid a third as
  fine as the image (it is smooth), and moved only by respiration;
- vessels and the guiding catheter are splatted as tubes: for each short piece of centreline the
  pixels nearby get the chord length of the ray through a cylinder of the lumen's radius, widened
  by the motion across the vessel during the exposure pulse, so overlapping and larger vessels
  look darker and fast systolic frames look blurred;
- contrast enters at the ostium, advances along the tree by arc length at the flow speed (faster
  in diastole), plateaus and washes out; nothing passes a total occlusion antegradely;
- the heart contracts towards its centre in systole, the base descending towards the apex, with
  a little twist and sway, and the whole chest drifts with breathing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from annotation.phantom.anatomy import CoronaryTree, HeartGeometry, arc_length, catmull_rom, resample_polyline
from annotation.phantom.findings import Artery
from annotation.phantom.projection import CArmView, Geometry, detector_rays, project

#: Attenuation per mm of undiluted contrast, in display units: a 3.2 mm artery at full
#: opacification lets through about a quarter of the light, so it shows about as dark against
#: the lung and the heart shadow as in real cines.
CONTRAST_MU = 0.45
#: Attenuation per mm of the guiding catheter's radio-opaque wall.
CATHETER_WALL_MU = 0.42
CATHETER_OUTER_MM = 0.9  # 5-6 F
CATHETER_INNER_MM = 0.68
#: Seconds for the ostium to go from no contrast to full opacification.
RISE_S = 0.3
#: Detector blur plus pixel integration, as a box width in pixels.
DETECTOR_BLUR_PX = 1.3
#: Smear (mm of anatomy during the exposure pulse) at which FrameTruth.sharpness is 1/e.
SHARP_SMEAR_MM = 0.55
#: Above this concentration a vessel point counts as opacified.
OPACIFIED = 0.5


@dataclass(frozen=True)
class LoopSpec:
    view: CArmView
    geometry: Geometry
    frames: int  # e.g. 40-90
    frame_rate: float  # 10-30 fps
    heart_rate_bpm: float  # 55-100
    injection_start_s: float  # contrast arrives at the ostium
    flow_speed_mm_s: float  # contrast front speed along the tree (100-250 mm/s)
    plateau_s: float
    washout_s: float
    filled: bool = True  # False: catheter-only / missed-ostium run with no coronary filling ("other" class)
    seed: int = 0  # seeds the patient's chest (pass the exam's seed: the same body in every loop)


@dataclass
class FrameTruth:
    opacified_fraction: float  # share of the tree's length with concentration above 0.5
    mean_concentration: float  # length-weighted mean over the tree
    motion_px_per_frame: float  # how far the vessels moved since the previous frame
    sharpness: float  # 0-1, 1 = no motion blur


# --- contrast -------------------------------------------------------------------------------------


def injection_curve(
    tau: np.ndarray | float, rise_s: np.ndarray | float, plateau_s: float, washout_s: float
) -> np.ndarray:
    """Concentration of the blood leaving the ostium `tau` seconds after contrast first arrives."""
    tau = np.asarray(tau, dtype=float)
    up = np.clip(tau / rise_s, 0.0, 1.0)
    up = up * up * (3 - 2 * up)
    down = np.clip((tau - rise_s - plateau_s) / max(washout_s, 1e-3), 0.0, 1.0)
    return up * 0.5 * (1.0 + np.cos(np.pi * down))


def _contraction(t: np.ndarray | float, heart_rate_bpm: float, phase_s: float) -> np.ndarray:
    """Ventricular contraction, 0 at end-diastole to 1 at end-systole (slightly below 0 at the atrial kick).

    Systole lasts about 0.35 s * sqrt(RR) whatever the rate; fast heart rates shorten diastole, the
    quiet, sharp part of the cycle.
    """
    period = 60.0 / heart_rate_bpm
    x = np.mod(np.asarray(t, dtype=float) + phase_s, period)
    systole = 0.35 * np.sqrt(period)
    relax = 0.13 * np.sqrt(period) + 0.03
    c = np.where(x < systole, 0.5 * (1 - np.cos(np.pi * x / systole)), 0.0)
    falling = (x >= systole) & (x < systole + relax)
    c = np.where(falling, 0.5 * (1 + np.cos(np.pi * (x - systole) / relax)), c)
    kick = np.clip((x - (period - 0.16)) / 0.16, 0.0, 1.0)
    return c - 0.06 * np.sin(np.pi * kick) ** 2


@dataclass(frozen=True)
class _Flow:
    """Where a blood element leaving the ostium at time t' is at time t (pulsatile transport)."""

    times: np.ndarray
    travelled_mm: np.ndarray

    @classmethod
    def for_spec(cls, spec: LoopSpec, phase_s: float, duration_s: float) -> _Flow:
        times = np.arange(spec.injection_start_s - 12.0, duration_s + 1.0, 0.002)
        # Coronary flow is mostly diastolic: slow while the myocardium contracts.
        speed = 1.25 - _contraction(times, spec.heart_rate_bpm, phase_s)
        period_samples = max(int(60.0 / spec.heart_rate_bpm / 0.002), 1)
        speed = speed / speed[:period_samples].mean() * spec.flow_speed_mm_s
        travelled = np.concatenate([[0.0], np.cumsum((speed[1:] + speed[:-1]) / 2 * 0.002)])
        return cls(times, travelled)

    def departure(self, t: float, distance_mm: np.ndarray) -> np.ndarray:
        """When the blood now `distance_mm` down the tree left the ostium."""
        now = np.interp(t, self.times, self.travelled_mm)
        return np.interp(now - distance_mm, self.travelled_mm, self.times)


@dataclass(frozen=True)
class _Perfusion:
    """Per centreline point: the path length to reach it, extra delay and cap from severe stenoses,
    and whether antegrade flow reaches it at all."""

    distance_mm: np.ndarray
    cap: np.ndarray
    reached: np.ndarray

    @classmethod
    def of(cls, tree: CoronaryTree) -> _Perfusion:
        arcs = tree.arc_length_from_ostium()
        distances: list[np.ndarray] = []
        caps: list[np.ndarray] = []
        reached: list[np.ndarray] = []
        for index, branch in enumerate(tree.branches):
            radius = branch.radius_mm
            window = 30  # points each side (15 mm): the lumen beside most lesions, little tapering
            padded = np.pad(radius, window, mode="edge")
            reference = np.max(np.lib.stride_tricks.sliding_window_view(padded, 2 * window + 1), axis=1)
            narrowing = 1.0 - radius / np.maximum(reference, 1e-6)
            # Slow flow beyond 90-99 % stenoses: a delay and a little less contrast (TIMI 2).
            severity = np.clip((narrowing - 0.8) / 0.19, 0.0, 1.0)
            worst = np.maximum.accumulate(severity)
            delay = 70.0 * worst**2
            cap = 1.0 - 0.2 * worst**2
            blocked = np.cumsum(radius <= 1e-6) > 0
            if branch.parent is not None:
                p, at = branch.parent, branch.parent_point
                delay = delay + (distances[p][at] - arcs[p][at])
                cap = np.minimum(cap, caps[p][at])
                blocked = blocked | (not reached[p][at])
            distances.append(arcs[index] + delay)
            caps.append(cap)
            reached.append(~blocked)
        return cls(np.concatenate(distances), np.concatenate(caps), np.concatenate(reached))


def contrast_concentration(tree: CoronaryTree, spec: LoopSpec, t: float, phase_s: float = 0.0) -> list[np.ndarray]:
    """Per branch, the contrast concentration (0-1) at each centreline point at time t.

    `phase_s` is where in the cardiac cycle the loop starts (render_loop draws it at random); it
    only modulates the pulsatile speed of the front.
    """
    flow = _Flow.for_spec(spec, phase_s, spec.frames / spec.frame_rate + 1.0)
    perfusion = _Perfusion.of(tree)
    values = _concentration(perfusion, flow, spec, t)
    return np.split(values, np.cumsum([len(b.points_mm) for b in tree.branches])[:-1])


def _concentration(perfusion: _Perfusion, flow: _Flow, spec: LoopSpec, t: float) -> np.ndarray:
    if not spec.filled:
        return np.zeros_like(perfusion.distance_mm)
    departed = flow.departure(t, perfusion.distance_mm)
    # The front spreads as it travels (dispersion): the rise lengthens down the tree.
    rise = RISE_S + perfusion.distance_mm / 1500.0
    value = injection_curve(departed - spec.injection_start_s, rise, spec.plateau_s, spec.washout_s)
    return value * perfusion.cap * perfusion.reached


# --- motion ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Motion:
    heart: HeartGeometry
    heart_rate_bpm: float
    phase_s: float
    descent_mm: float  # how far the AV ring moves towards the apex in systole
    squeeze: float  # radial shortening towards the long axis at end-systole
    twist_rad: float
    sway_mm: np.ndarray
    breath_mm: np.ndarray
    breath_period_s: float
    breath_phase: float

    @classmethod
    def draw(cls, heart: HeartGeometry, heart_rate_bpm: float, rng: np.random.Generator) -> _Motion:
        sway = rng.normal(0.0, 1.0, 3)
        # Cine runs are taken in held inspiration: what remains is a slow drift of a millimetre or less.
        breath = np.array([rng.normal(0, 0.3), rng.normal(0, 0.4), 1.0]) * rng.uniform(0.2, 1.0)
        return cls(
            heart=heart,
            heart_rate_bpm=heart_rate_bpm,
            phase_s=float(rng.uniform(0.0, 60.0 / heart_rate_bpm)),
            descent_mm=float(rng.uniform(7.0, 12.0) * heart.scale),
            squeeze=float(rng.uniform(0.08, 0.14)),
            twist_rad=float(np.radians(rng.uniform(4.0, 9.0))),
            sway_mm=sway / np.linalg.norm(sway) * rng.uniform(1.0, 3.0),
            breath_mm=breath,
            breath_period_s=float(rng.uniform(3.5, 6.0)),
            breath_phase=float(rng.uniform(0, 2 * np.pi)),
        )

    def breathing(self, t: float) -> np.ndarray:
        return self.breath_mm * np.sin(2 * np.pi * t / self.breath_period_s + self.breath_phase)

    def heart_points(self, points: np.ndarray, t: float) -> np.ndarray:
        """Where points fixed to the heart are at time t."""
        h = self.heart
        c = float(_contraction(t, self.heart_rate_bpm, self.phase_s))
        rel = points - h.base_mm
        along = rel @ h.long_axis
        s = along / h.length_mm
        radial = rel - along[:, None] * h.long_axis
        # The base moves most (the AV groove, so the RCA and LCx swing widely); the apex is still.
        descent = np.where(s < 0.0, 0.75, np.clip(1.0 - s, 0.0, 1.0)) * self.descent_mm * c
        squeeze = self.squeeze * c * np.clip(0.55 + 0.6 * s, 0.3, 1.0)
        angle = c * self.twist_rad * (np.clip(s, 0, 1) - 0.35)  # apex one way, base the other
        twisted = radial * np.cos(angle)[:, None] + np.cross(h.long_axis, radial) * np.sin(angle)[:, None]
        moved = h.base_mm + (along[:, None] + descent[:, None]) * h.long_axis + twisted * (1 - squeeze)[:, None]
        return moved + self.sway_mm * c + self.breathing(t)

    def catheter_points(self, points: np.ndarray, follow: np.ndarray, tip_mm: np.ndarray, t: float) -> np.ndarray:
        """The catheter's tip rides with the ostium; its shaft in the arch only breathes."""
        tip_shift = self.heart_points(tip_mm[None], t)[0] - tip_mm - self.breathing(t)
        return points + follow[:, None] * tip_shift + self.breathing(t)


# --- tube splatting -------------------------------------------------------------------------------

_STENCILS = (2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32)


def _chord_profile(u: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Chord through a unit-radius cylinder at distance u from its axis, averaged over a box of
    `width` (motion during the pulse, detector blur): closed form of the integral of 2*sqrt(1-x^2)."""
    half = width * 0.5
    x1 = np.clip(u + half, -1.0, 1.0)
    x0 = np.clip(u - half, -1.0, 1.0)
    g1 = x1 * np.sqrt(1.0 - x1 * x1) + np.arcsin(x1)
    g0 = x0 * np.sqrt(1.0 - x0 * x0) + np.arcsin(x0)
    return (g1 - g0) / width


class _Splatter:
    """Draws tubes into a padded image: the maximum within one tube, the sum across tubes."""

    def __init__(self, size: int, groups: int, pad: int = 40) -> None:
        self.size, self.pad = size, pad
        self.width = size + 2 * pad
        self.pixels = self.width * self.width
        self.scratch = np.zeros(groups * self.pixels, dtype=np.float32)
        self.offsets = {}
        for k in _STENCILS:
            dy, dx = np.mgrid[-k : k + 1, -k : k + 1]
            self.offsets[k] = (dx.ravel().astype(np.float32), dy.ravel().astype(np.float32))

    def splat(
        self,
        start: np.ndarray,
        end: np.ndarray,
        radius_px: np.ndarray,
        blur_px: np.ndarray,
        weight: np.ndarray,
        group: np.ndarray,
        inner_ratio: np.ndarray | None = None,
        inner_weight: np.ndarray | None = None,
    ) -> np.ndarray:
        """Attenuation image (size, size) of tubes from `start` to `end` (pixel coordinates).

        `weight` multiplies the chord measured in radii (attenuation per mm times radius in mm).
        A hollow tube (the catheter) adds `inner_weight` times the chord of a coaxial cylinder
        `inner_ratio` times as wide. Within a group (one branch) overlapping pieces take the
        maximum, so a tube is not darkened where its pieces meet; different groups add, as
        overlapping vessels do.
        """
        count = len(radius_px)
        inner_ratio = np.zeros(count) if inner_ratio is None else inner_ratio
        inner_weight = np.zeros(count) if inner_weight is None else inner_weight
        keep = (radius_px > 0.25) & (np.abs(weight) + np.abs(inner_weight) > 1e-4)
        f32 = np.float32
        start = (start[keep] + self.pad).astype(f32)
        end = (end[keep] + self.pad).astype(f32)
        radius_px, blur_px = radius_px[keep].astype(f32), blur_px[keep].astype(f32)
        weight, group = weight[keep].astype(f32), group[keep]
        inner_ratio, inner_weight = inner_ratio[keep].astype(f32), inner_weight[keep].astype(f32)
        centre = np.rint((start + end) / 2)
        reach = np.linalg.norm(end - start, axis=1) / 2 + radius_px + blur_px / 2 + 1
        inside = np.all((centre > reach[:, None]) & (centre < self.width - 1 - reach[:, None]), axis=1)
        levels = np.searchsorted(_STENCILS, np.minimum(np.ceil(reach), _STENCILS[-1]))
        keys, values, pixels = [], [], []
        for level, k in enumerate(_STENCILS):
            chosen = np.nonzero(inside & (levels == level))[0]
            if not len(chosen):
                continue
            dx, dy = self.offsets[k]
            px, py = centre[chosen, 0:1] + dx, centre[chosen, 1:2] + dy
            wx, wy = px - start[chosen, 0:1], py - start[chosen, 1:2]
            sx = (end[chosen, 0] - start[chosen, 0])[:, None]
            sy = (end[chosen, 1] - start[chosen, 1])[:, None]
            t = np.clip((wx * sx + wy * sy) / np.maximum(sx * sx + sy * sy, 1e-6), 0.0, 1.0)
            ex, ey = wx - t * sx, wy - t * sy
            squared = ex * ex + ey * ey
            limit = radius_px[chosen] + blur_px[chosen] / 2
            near = squared < (limit * limit)[:, None]
            rows = np.nonzero(near)[0]
            picked = chosen[rows]
            distance = np.sqrt(squared[near])
            r, b = radius_px[picked], blur_px[picked]
            value = weight[picked] * _chord_profile(distance / r, b / r)
            hollow = np.nonzero(inner_ratio[picked] > 0)[0]
            if len(hollow):
                inner = r[hollow] * inner_ratio[picked[hollow]]
                value[hollow] += inner_weight[picked[hollow]] * _chord_profile(
                    distance[hollow] / inner, b[hollow] / inner
                )
            pixel = (py[near] * self.width + px[near]).astype(np.int64)
            keys.append(group[picked].astype(np.int64) * self.pixels + pixel)
            values.append(value.astype(f32))
            pixels.append(pixel)
        if not keys:
            return np.zeros((self.size, self.size), dtype=np.float32)
        key, value, pixel = np.concatenate(keys), np.concatenate(values), np.concatenate(pixels)
        np.maximum.at(self.scratch, key, value)
        best = self.scratch[key]
        # One entry per (group, pixel): whichever duplicate's index survives the write is unique.
        order = np.arange(len(key), dtype=np.float32)
        self.scratch[key] = order
        first = self.scratch[key] == order
        self.scratch[key] = 0.0
        image = np.bincount(pixel[first], weights=best[first], minlength=self.pixels)
        image = image.reshape(self.width, self.width)[self.pad : self.pad + self.size, self.pad : self.pad + self.size]
        return image.astype(np.float32)


# --- the chest ------------------------------------------------------------------------------------


def _interval(
    source: np.ndarray,
    rays: np.ndarray,
    centre: np.ndarray,
    radii: tuple[float, float, float],
    axes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Where each ray enters and leaves an ellipsoid (an infinite radius makes a cylinder)."""
    axes = np.eye(3) if axes is None else axes
    inverse = np.array([0.0 if np.isinf(r) else 1.0 / r for r in radii])
    o = ((source - centre) @ axes.T) * inverse
    d = (rays @ axes.T) * inverse
    a = np.maximum(np.sum(d * d, axis=-1), 1e-12)
    b = 2.0 * (d @ o)
    c = o @ o - 1.0
    root = np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def _chord(
    source: np.ndarray,
    rays: np.ndarray,
    centre: np.ndarray,
    radii: tuple[float, float, float],
    axes: np.ndarray | None = None,
) -> np.ndarray:
    """Length (mm) of each ray inside an ellipsoid or cylinder."""
    near, far = _interval(source, rays, centre, radii, axes)
    return np.maximum(far - near, 0.0)


def _stacked_chord(
    source: np.ndarray,
    rays: np.ndarray,
    centre: np.ndarray,
    radii: tuple[float, float],
    bottoms: np.ndarray,
    height: float,
) -> np.ndarray:
    """Total length of each ray inside a vertical cylinder cut into slabs (vertebrae) of `height`
    starting at `bottoms`."""
    near, far = _interval(source, rays, centre, (radii[0], radii[1], np.inf))
    dz = np.where(np.abs(rays[..., 2]) < 1e-9, 1e-9, rays[..., 2])
    total = np.zeros_like(near)
    for bottom in bottoms:
        t1, t2 = (bottom - source[2]) / dz, (bottom + height - source[2]) / dz
        total += np.maximum(np.minimum(far, np.maximum(t1, t2)) - np.maximum(near, np.minimum(t1, t2)), 0.0)
    return total


def _box_blur(image: np.ndarray, radius: int, passes: int = 3) -> np.ndarray:
    """Separable box blur, repeated: close to a Gaussian of sigma ~ radius * sqrt(passes / 3)."""
    out = np.asarray(image, dtype=np.float32)
    size = 2 * radius + 1
    for _ in range(passes):
        padded = np.pad(out, ((radius + 1, radius), (0, 0)), mode="edge")
        total = np.cumsum(padded, axis=0)
        out = (total[size:] - total[:-size]) / size
        padded = np.pad(out, ((0, 0), (radius + 1, radius)), mode="edge")
        total = np.cumsum(padded, axis=1)
        out = (total[:, size:] - total[:, :-size]) / size
    return out


def _sharpen(image: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp masking, as cath-lab image processing does. The low-pass is taken at half
    resolution (a blur of about 4 image pixels), which is all it needs and four times cheaper."""
    rows, columns = image.shape
    if rows % 2 or columns % 2:
        return image + amount * (image - _box_blur(image, 4, passes=2))
    half = (image[::2, ::2] + image[1::2, ::2] + image[::2, 1::2] + image[1::2, 1::2]) * 0.25
    low = _box_blur(half, 2, passes=2)
    out = image.copy()
    blocks = out.reshape(rows // 2, 2, columns // 2, 2)
    blocks += amount * (blocks - low[:, None, :, None])
    return out


def _smooth_noise(rng: np.random.Generator, cells: int, size: int) -> np.ndarray:
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC))


@dataclass(frozen=True)
class _Chest:
    """Background attenuation and the aortic-root map for one view, with a margin for breathing."""

    attenuation: np.ndarray  # (size + 2 margin,)^2
    aortic_root: np.ndarray  # chord (mm) through the root and ascending aorta, same grid
    margin: int


def _chest(heart: HeartGeometry, view: CArmView, geometry: Geometry, body: np.random.Generator) -> _Chest:
    margin = 32
    full = geometry.detector_px + 2 * margin
    coarse = full // 3
    pixel = geometry.detector_pixel_mm * full / coarse
    grid = Geometry(geometry.sid_mm, geometry.sod_mm, coarse, pixel)
    source, rays = detector_rays(view, geometry, coarse, margin_px=margin)
    k = heart.scale * body.uniform(0.95, 1.15)  # body habitus
    x_mid, y_spine = heart.midline_x_mm, heart.spine_y_mm
    z_heart = heart.centre_mm[2]
    y_chest = y_spine - 70.0 * k
    a = np.zeros(rays.shape[:2])
    chest_half_width = 150.0 * k * body.uniform(0.95, 1.1)
    a += 0.0030 * _chord(source, rays, np.array([x_mid, y_chest, 0.0]), (chest_half_width, 105.0 * k, np.inf))
    # Lungs fill the chest round the mediastinal column, the heart and the diaphragm domes: they
    # are the bright part of a cine, the heart shadow and the liver below the domes the dark part.
    # Their edges are softened: curved surfaces, partial volume and the beating heart blur them.
    lungs = _chord(source, rays, np.array([x_mid, y_chest + 5.0, 0.0]), (chest_half_width - 22.0, 84.0 * k, np.inf))
    lungs -= _chord(source, rays, np.array([x_mid - 8.0, y_spine - 30.0 * k, 0.0]), (30.0 * k, 70.0 * k, np.inf))
    heart_axes = np.vstack([heart.long_axis, *np.linalg.svd(heart.long_axis[None])[2][1:]])
    # The heart's silhouette: the AV-groove arteries run along its borders.
    whole_heart = heart.centre_mm - heart.long_axis * 6.0 * heart.scale
    lungs -= _chord(source, rays, whole_heart, (62.0 * heart.scale, 47.0 * heart.scale, 43.0 * heart.scale), heart_axes)
    # The great vessels above the heart widen the mediastinum.
    lungs -= _chord(
        source, rays, np.array([x_mid - 6.0, y_chest - 5.0, z_heart + 95.0 * k]), (36.0 * k, 50.0 * k, 85.0 * k)
    )
    # The heart rests on the central tendon; the domes rise either side of it.
    heart_bottom = whole_heart[2] - 52.0 * heart.scale
    lungs -= _chord(
        source, rays, np.array([x_mid + 18.0, y_chest, heart_bottom - 88.0 * k]), (85.0 * k, 115.0 * k, 95.0 * k)
    )
    dome_z = heart_bottom + body.uniform(-5.0, 15.0) * k
    for side in (-1.0, 1.0):
        dome = np.array([x_mid + side * 62.0 * k, y_chest, dome_z - 100.0 * k + side * 10])
        lungs -= _chord(source, rays, dome, (105.0 * k, 125.0 * k, 105.0 * k))
    lung_air = _box_blur(np.maximum(lungs, 0.0), max(round(5.0 / pixel), 1))
    a -= 0.0095 * lung_air
    # Mottled soft tissue, and lung markings: the pulmonary vessels branching out from the hila.
    texture = sum(
        _smooth_noise(body, cells, coarse) * weight for cells, weight in ((10, 0.5), (28, 0.35), (70, 0.3), (130, 0.2))
    )
    a += 0.07 * texture * (0.3 + np.clip(lung_air, 0, 120) / 120)
    a += _lung_markings(source, rays, grid, view, heart, body, (x_mid, y_chest, z_heart, k))
    # Spine: vertebral bodies with their discs, pedicles, spinous processes; the sternum in front.
    height, disc = 24.0 * k, 6.0 * k
    bottoms = z_heart - 240.0 + np.arange(int(480 / (height + disc)) + 1) * (height + disc)
    bone = 0.006
    spine = _stacked_chord(source, rays, np.array([x_mid, y_spine, 0.0]), (21.0 * k, 16.0 * k), bottoms, height)
    for side in (-1.0, 1.0):
        pedicle = np.array([x_mid + side * 13.0 * k, y_spine + 20.0 * k, 0.0])
        spine += 1.5 * _stacked_chord(source, rays, pedicle, (4.0 * k, 7.0 * k), bottoms + 5.0, 13.0)
    spine += _stacked_chord(
        source, rays, np.array([x_mid, y_spine + 45.0 * k, 0.0]), (4.0 * k, 14.0 * k), bottoms, height + 4
    )
    sternum = np.array([x_mid, y_chest - 100.0 * k, z_heart + 30])
    spine += 0.8 * _chord(source, rays, sternum, (14.0 * k, 5.0 * k, 120.0))
    a += bone * _box_blur(spine, max(round(1.5 / pixel), 1))
    # Ribs: bony tubes (a cortical shell) round the chest wall, each falling from its joint with
    # the spine to its front end, so back and front ribs cross in every view.
    rib_pieces: list[np.ndarray] = []
    for side in (-1.0, 1.0):
        for rib in range(12):
            z_back = z_heart + 150.0 * k - rib * 24.0 * k + body.normal(0, 2)
            theta = np.linspace(np.radians(8), np.radians(145 + 10 * body.uniform()), 60)
            x = x_mid + side * (chest_half_width - 15.0) * np.sin(theta) ** 0.8
            y = y_chest + (100.0 * k) * np.cos(theta)
            z = z_back + 6.0 * np.sin(theta) - 105.0 * k * (theta / theta[-1]) ** 1.8
            rib_pieces.append(np.column_stack([x, y, z]))
    splatter = _Splatter(coarse, len(rib_pieces), pad=24)
    starts, ends, radii, groups = [], [], [], []
    for group, points in enumerate(rib_pieces):
        pixels, magnification = project(points, view, grid)
        starts.append(pixels[:-1])
        ends.append(pixels[1:])
        radii.append(5.0 * k * magnification[:-1] / pixel)
        groups.append(np.full(len(points) - 1, group))
    start, end, radius, group_of = np.vstack(starts), np.vstack(ends), np.concatenate(radii), np.concatenate(groups)
    soft = np.full(len(radius), 1.2)
    rib_mu = 0.008
    a += splatter.splat(start, end, radius, soft, np.full(len(radius), rib_mu * 5.0 * k), group_of)
    a -= splatter.splat(start, end, radius * 0.7, soft, np.full(len(radius), rib_mu * 0.8 * 3.5 * k), group_of)
    # ECG electrodes on the chest wall: small metal snaps and their leads.
    electrodes = body.integers(0, 4)
    for _ in range(electrodes):
        where = heart.centre_mm + np.array([body.uniform(-90, 90), -110.0 * k, body.uniform(-70, 90)])
        pix, mag = project(where[None], view, grid)
        yy, xx = np.mgrid[0:coarse, 0:coarse]
        r = np.hypot(xx - pix[0, 0], yy - pix[0, 1])
        a += 0.5 * np.clip(2.5 * mag[0] / pixel - r, 0.0, 1.0)
    root_axes = np.vstack([heart.ascending_axis, *np.linalg.svd(heart.ascending_axis[None])[2][1:]])
    root = _chord(
        source,
        rays,
        heart.aortic_root_mm,
        (heart.aortic_radius_mm * 1.3, heart.aortic_radius_mm * 1.1, heart.aortic_radius_mm * 1.1),
        root_axes,
    )
    ascending = heart.aortic_root_mm + heart.ascending_axis * 45.0
    root = np.maximum(
        root, _chord(source, rays, ascending, (45.0, heart.aortic_radius_mm, heart.aortic_radius_mm), root_axes)
    )

    def upsample(image: np.ndarray) -> np.ndarray:
        return np.asarray(
            Image.fromarray(image.astype(np.float32), mode="F").resize((full, full), Image.Resampling.BILINEAR)
        )

    # Contrast in the root mixes with the blood at once: a cloud, not a solid.
    root = _box_blur(root, max(round(4.0 / pixel), 1))
    return _Chest(upsample(a), upsample(root), margin)


def _lung_markings(
    source: np.ndarray,
    rays: np.ndarray,
    grid: Geometry,
    view: CArmView,
    heart: HeartGeometry,
    body: np.random.Generator,
    chest: tuple[float, float, float, float],
) -> np.ndarray:
    """Pulmonary vessels as soft tubes branching from each hilum (the fine lines of a real lung field)."""
    x_mid, y_chest, z_heart, k = chest
    starts, ends, radii = [], [], []
    stack: list[tuple[np.ndarray, np.ndarray, float, float, int]] = []
    for side in (-1.0, 1.0):
        hilum = np.array([x_mid + side * 45.0 * k, y_chest + 15.0, z_heart + 40.0 * k])
        for _ in range(8):
            # Trunks leave from all round the hilum, not from one point (that would be a starburst).
            start = hilum + body.normal(0.0, 18.0, 3) * k
            direction = np.array([side * body.uniform(0.3, 1.0), body.uniform(-0.6, 0.6), body.uniform(-1.0, 1.0)])
            stack.append((start, direction / np.linalg.norm(direction), 38.0 * k, 1.9, 0))
    while stack:
        origin, direction, length, radius, depth = stack.pop()
        bend = body.normal(0.0, 0.4, 3)
        middle = origin + direction * length * 0.5 + bend * length * 0.15
        tip = origin + direction * length + bend * length * 0.3
        for a, b in ((origin, middle), (middle, tip)):
            starts.append(a)
            ends.append(b)
            radii.append(radius)
        if depth < 4:
            for _ in range(2):
                turn = direction + body.normal(0.0, 0.45, 3)
                stack.append((tip, turn / np.linalg.norm(turn), length * 0.7, radius * 0.68, depth + 1))
    start_px, magnification = project(np.array(starts), view, grid)
    end_px, _ = project(np.array(ends), view, grid)
    calibre = np.array(radii)
    splatter = _Splatter(grid.detector_px, 1, pad=24)
    image = splatter.splat(
        start_px,
        end_px,
        calibre * magnification / grid.detector_pixel_mm,
        np.full(len(calibre), 1.5),
        0.022 * calibre,
        np.zeros(len(calibre), dtype=np.int64),
    )
    # Markings behind the heart are lost in its shadow; the attenuation map is what we return.
    heart_shadow = _chord(source, rays, heart.centre_mm, (55.0 * heart.scale, 44.0 * heart.scale, 40.0 * heart.scale))
    return image * np.clip(1.0 - heart_shadow / 60.0, 0.2, 1.0)


def _wedges(chest: _Chest, size: int, rng: np.random.Generator) -> np.ndarray:
    """Semi-transparent wedge filters the operator slides over the bright lung: straight-edged
    darker zones (on the margined background grid; usually one, sometimes none or two)."""
    full = chest.attenuation.shape[0]
    wedges = np.zeros((full, full), dtype=np.float32)
    count = rng.choice(3, p=(0.45, 0.42, 0.13))
    if not count:
        return wedges
    yy, xx = np.mgrid[0:full, 0:full].astype(np.float32) - (full - 1) / 2
    # Aim each wedge at the clearest (brightest) part of the field.
    clear = chest.attenuation < np.percentile(chest.attenuation, 15)
    target = np.array([xx[clear].mean(), yy[clear].mean()])
    base_angle = np.arctan2(target[1], target[0]) if np.linalg.norm(target) > 5 else rng.uniform(0, 2 * np.pi)
    for number in range(count):
        # A second wedge comes in from the opposite side, as the two filter blades do.
        angle = base_angle + np.pi * number + rng.normal(0.0, 0.3)
        depth = (xx * np.cos(angle) + yy * np.sin(angle)) - size * rng.uniform(0.05, 0.35)
        wedges += rng.uniform(0.3, 0.8) * np.clip(depth / rng.uniform(8.0, 24.0) + 0.5, 0.0, 1.0)
    return wedges


def _field_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """The collimated field: a circle (image intensifier) or a rounded octagon (flat panel)."""
    centre = (size - 1) / 2 + rng.normal(0, size * 0.006, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = np.abs(xx - centre[0]), np.abs(yy - centre[1])
    if rng.uniform() < 0.4:
        edge = size * rng.uniform(0.44, 0.5) - np.hypot(dx, dy)
    else:
        half = size * rng.uniform(0.46, 0.5)
        corner = half * rng.uniform(1.62, 1.8)
        edge = np.minimum(half - np.maximum(dx, dy), (corner - (dx + dy)) / np.sqrt(2))
    mask = np.clip(edge / 1.5 + 0.5, 0.0, 1.0)
    vignette = 1.0 - rng.uniform(0.05, 0.25) * (np.hypot(xx - centre[0], yy - centre[1]) / (size / 2)) ** 2
    return (mask * vignette).astype(np.float32)


# --- the guiding catheter -------------------------------------------------------------------------


def _catheter_path(tree: CoronaryTree, heart: HeartGeometry, engaged: bool, rng: np.random.Generator) -> np.ndarray:
    """Centreline from the descending aorta over the arch, down the ascending aorta into the ostium
    (a Judkins left or right shape); a disengaged tip sits a few mm back in the sinus."""
    root, radius, up = heart.aortic_root_mm, heart.aortic_radius_mm, heart.ascending_axis
    ostium = tree.ostium_mm
    first = tree.branches[0].points_mm
    into = (first[min(8, len(first) - 1)] - first[0]) / max(
        np.linalg.norm(first[min(8, len(first) - 1)] - first[0]), 1e-6
    )
    outward = (ostium - root) / np.linalg.norm(ostium - root)
    tip = ostium + into * 1.5 if engaged else ostium - outward * rng.uniform(4.0, 8.0) + up * rng.uniform(-3, 5)
    top = root + up * 95.0
    arch = np.array([heart.midline_x_mm + 8.0, (root[1] + heart.spine_y_mm) / 2, top[2] + 12.0])
    descending_x = heart.midline_x_mm + 24.0 * heart.scale
    descending_y = heart.spine_y_mm - 32.0 * heart.scale
    if tree.artery is Artery.LCA:
        knots = [
            tip,
            tip - into * 5.0 - outward * 4.0 + up * 2.0,
            root - outward * radius * 0.6 + up * 16.0,
            root - outward * radius * 0.3 + up * 55.0,
        ]
    else:
        knots = [
            tip,
            tip - into * 4.0 - outward * 6.0 + up * 6.0,
            root + outward * radius * 0.2 + up * 28.0,
            root - outward * radius * 0.4 + up * 60.0,
        ]
    knots += [
        top,
        arch,
        np.array([descending_x, descending_y, top[2] - 20.0]),
        np.array([descending_x + 3.0, descending_y + 2.0, top[2] - 150.0]),
        np.array([descending_x + 5.0, descending_y + 4.0, top[2] - 400.0]),
    ]
    dense = catmull_rom(np.array(knots), 40)
    return resample_polyline(dense, 1.0)[0]


# --- the loop -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Vessels:
    """The tree as render nodes: decimated where the lumen is wide and smooth."""

    points: np.ndarray  # (M, 3)
    radius: np.ndarray  # (M,)
    start: np.ndarray  # (S,) node index of each tube piece's start
    end: np.ndarray
    group: np.ndarray  # (S,) branch index
    node_of: np.ndarray  # (M,) index into the tree's concatenated centreline points

    @classmethod
    def of(cls, tree: CoronaryTree) -> _Vessels:
        points, radius, node_of, starts, ends, groups = [], [], [], [], [], []
        offset = 0
        count = 0
        for index, branch in enumerate(tree.branches):
            r = branch.radius_mm
            n = len(r)
            # Pieces about two diameters long cost least to splat; keep every point where the
            # lumen changes (a lesion) so that no narrowing is skipped.
            piece_mm = np.clip(1.6 * r + 0.4, 0.5, 3.0)
            budget = np.floor(np.cumsum(np.gradient(arc_length(branch.points_mm)) / piece_mm))
            change = np.abs(np.diff(r, prepend=r[0])) > 0.015 * np.maximum(r, 0.05)
            change = change | np.roll(change, 1) | np.roll(change, -1)
            keep = (np.diff(budget, prepend=-1.0) > 0) | change
            keep[[0, -1]] = True
            if branch.parent is not None:
                # Do not draw the child inside its parent's lumen: it would darken the junction.
                parent = tree.branches[branch.parent]
                inside = (
                    np.linalg.norm(branch.points_mm - branch.points_mm[0], axis=1)
                    < parent.radius_mm[branch.parent_point]
                )
                inside &= np.arange(n) < n - 2
                keep &= ~inside
                keep[np.argmax(~inside)] = True
            chosen = np.nonzero(keep)[0]
            points.append(branch.points_mm[chosen])
            radius.append(r[chosen])
            node_of.append(offset + chosen)
            ids = count + np.arange(len(chosen))
            starts.append(ids[:-1])
            ends.append(ids[1:])
            groups.append(np.full(len(chosen) - 1, index))
            count += len(chosen)
            offset += n
        return cls(
            np.vstack(points),
            np.concatenate(radius),
            np.concatenate(starts),
            np.concatenate(ends),
            np.concatenate(groups),
            np.concatenate(node_of),
        )


def _default_heart(tree: CoronaryTree) -> HeartGeometry:
    """An average heart round a tree built by hand (build_coronary_tree always records its own)."""
    centre = np.vstack([branch.points_mm for branch in tree.branches]).mean(axis=0)
    axis = np.array([0.58, -0.58, -0.57]) / np.linalg.norm([0.58, -0.58, -0.57])
    up = np.array([-0.3, -0.25, 1.0]) / np.linalg.norm([-0.3, -0.25, 1.0])
    return HeartGeometry(
        centre_mm=centre,
        base_mm=centre - 36.0 * axis,
        long_axis=axis,
        length_mm=80.0,
        radius_mm=37.0,
        aortic_root_mm=tree.ostium_mm + np.array([-8.0, 4.0, 2.0]),
        aortic_radius_mm=13.0,
        ascending_axis=up,
        midline_x_mm=float(centre[0] - 22.0),
        spine_y_mm=float(centre[1] + 88.0),
        scale=1.0,
    )


def render_loop(
    tree: CoronaryTree, spec: LoopSpec, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, FrameTruth]]:
    """Yield each frame as float32 (size, size) in [0, 1] (1 = bright, as the display shows; vessels
    dark) with its truth. The size is `spec.geometry.detector_px` (512 by default).

    `spec.seed` draws the patient's chest and the system's collimator, so loops of one exam given
    the exam's seed share them; `rng` draws everything that changes from run to run (cardiac
    phase, breathing, sway, exposure, noise). Same inputs, same frames.
    """
    heart = tree.heart or _default_heart(tree)
    geometry, view = spec.geometry, spec.view
    size = geometry.detector_px
    body = np.random.default_rng([spec.seed, 7411])
    chest = _chest(heart, view, geometry, body)
    field = _field_mask(size, body)

    motion = _Motion.draw(heart, spec.heart_rate_bpm, rng)
    exposure_s = float(rng.uniform(0.006, 0.012))
    duration = spec.frames / spec.frame_rate
    flow = _Flow.for_spec(spec, motion.phase_s, duration + 1.0)
    perfusion = _Perfusion.of(tree)
    vessels = _Vessels.of(tree)
    lengths = np.concatenate([np.full(len(b.points_mm), 1.0) for b in tree.branches])

    # Unfilled runs: either the catheter alone, or a puff that misses the ostium into the root.
    puff = (not spec.filled) and rng.uniform() < 0.5
    injecting = spec.filled or puff
    residual = float(rng.uniform(0.0, 0.7))  # contrast left in the catheter from the last run
    catheter = _catheter_path(tree, heart, engaged=spec.filled or rng.uniform() < 0.5, rng=rng)
    tip_distance = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(catheter, axis=0), axis=1))])
    follow = np.clip(1.0 - (tip_distance - 25.0) / 70.0, 0.0, 1.0)

    # Display: the brightest background near the top of the range, a gamma, quantum noise drawn
    # from a per-loop bank (a random crop of it each frame).
    gamma = float(rng.uniform(0.8, 1.0))
    inner = chest.attenuation[chest.margin : chest.margin + size, chest.margin : chest.margin + size]
    # Exposure control: the clearer tenth of the field shows bright, the clearest parts clip.
    clearest = float(np.percentile(inner, 6.0))
    gain = float(rng.uniform(0.68, 0.8))
    background = (gain * np.exp(-gamma * (chest.attenuation - clearest + _wedges(chest, size, rng)))).astype(np.float32)
    lift = float(rng.uniform(0.06, 0.12))
    sharpen = float(rng.uniform(0.4, 0.9))  # the system's edge enhancement
    noise_level = float(rng.uniform(0.012, 0.022))
    bank = rng.standard_normal((size + 96, size + 96), dtype=np.float32)
    bank = (bank + np.roll(bank, 1, 0) + np.roll(bank, 1, 1) + np.roll(bank, (1, 1), (0, 1))) * (0.5 * noise_level)

    groups = len(tree.branches) + 1  # every branch, and the catheter
    splatter = _Splatter(size, groups)
    mm_per_px = geometry.detector_pixel_mm
    half_exposure = exposure_s / 2
    frame_dt = 1.0 / spec.frame_rate
    a, b = vessels.start, vessels.end
    radius_mm = (vessels.radius[a] + vessels.radius[b]) / 2
    pieces = len(catheter) - 1
    catheter_group = np.full(pieces, groups - 1)
    catheter_blur = np.full(pieces, DETECTOR_BLUR_PX)
    catheter_ratio = np.full(pieces, CATHETER_INNER_MM / CATHETER_OUTER_MM)
    catheter_wall = np.full(pieces, CATHETER_WALL_MU * CATHETER_OUTER_MM)
    no_ratio = np.zeros(len(a))

    for index in range(spec.frames):
        t = index / spec.frame_rate
        # Vessels: positions at the middle and the ends of the exposure pulse.
        now = motion.heart_points(vessels.points, t)
        pix, magnification = project(now, view, geometry)
        before, _ = project(motion.heart_points(vessels.points, t - half_exposure), view, geometry)
        after, _ = project(motion.heart_points(vessels.points, t + half_exposure), view, geometry)
        previous, _ = project(motion.heart_points(vessels.points, t - frame_dt), view, geometry)
        concentration_all = _concentration(perfusion, flow, spec, t)
        concentration = concentration_all[vessels.node_of]
        piece = pix[b] - pix[a]
        along = piece / np.maximum(np.linalg.norm(piece, axis=1, keepdims=True), 1e-6)
        smear = ((after - before)[a] + (after - before)[b]) / 2
        across = np.abs(smear[:, 0] * along[:, 1] - smear[:, 1] * along[:, 0])
        blur = np.sqrt(across**2 + DETECTOR_BLUR_PX**2)
        radius_px = radius_mm * (magnification[a] + magnification[b]) / 2 / mm_per_px
        weight = CONTRAST_MU * radius_mm * (concentration[a] + concentration[b]) / 2

        # Catheter: radio-opaque wall, lumen full of contrast while injecting.
        if injecting:
            tau = t - spec.injection_start_s
            filling = float(np.clip((tau + 0.35) / 0.25, 0.0, 1.0))
            lumen = max(residual, filling * (1.0 - 0.25 * np.clip((tau - RISE_S - spec.plateau_s) / 2.0, 0, 1)))
        else:
            lumen = residual
        cpix, cmag = project(motion.catheter_points(catheter, follow, tree.ostium_mm, t), view, geometry)
        catheter_radius = CATHETER_OUTER_MM * (cmag[1:] + cmag[:-1]) / 2 / mm_per_px
        catheter_lumen = np.full(pieces, (CONTRAST_MU * lumen - CATHETER_WALL_MU) * CATHETER_INNER_MM)
        attenuation = splatter.splat(
            np.vstack([pix[a], cpix[:-1]]),
            np.vstack([pix[b], cpix[1:]]),
            np.concatenate([radius_px, catheter_radius]),
            np.concatenate([blur, catheter_blur]),
            np.concatenate([weight, catheter_wall]),
            np.concatenate([vessels.group, catheter_group]),
            np.concatenate([no_ratio, catheter_ratio]),
            np.concatenate([no_ratio, catheter_lumen]),
        )

        # Background and the aortic root, moved by breathing (whole pixels: it is smooth).
        shift, _ = project(motion.breathing(t)[None], view, geometry)
        dx, dy = np.rint(shift[0] - geometry.centre_px).astype(int).clip(-chest.margin, chest.margin)
        window = (
            slice(chest.margin - dy, chest.margin - dy + size),
            slice(chest.margin - dx, chest.margin - dx + size),
        )
        if injecting:
            puffed = injection_curve(t - spec.injection_start_s, RISE_S, spec.plateau_s * 0.5, 0.6)
            root_level = float(puffed) * (0.01 if spec.filled else 0.03)
            if root_level > 1e-3:
                attenuation += CONTRAST_MU * root_level * chest.aortic_root[window]
        frame = background[window] * np.exp(-gamma * attenuation)
        frame = np.maximum(_sharpen(frame, sharpen), 0.0)

        # Quantum noise: relative noise grows where less light arrives. Then the collimator.
        oy, ox = rng.integers(0, 96, 2)
        grain = bank[oy : oy + size, ox : ox + size]
        if rng.uniform() < 0.5:
            grain = grain.T
        frame += np.sqrt(frame) * grain
        frame += lift
        frame *= field
        np.clip(frame, 0.0, 1.0, out=frame)

        opacified = float(np.sum(lengths * (concentration_all > OPACIFIED)) / lengths.sum())
        mean_concentration = float(np.sum(lengths * concentration_all) / lengths.sum())
        moved = float(np.mean(np.linalg.norm(pix - previous, axis=1)))
        # Sharpness from the smear in millimetres of anatomy, so that it does not depend on the
        # detector's pixel size: 1 still, about 0.4 for a smear of half a millimetre.
        smear_mm = float(np.mean(np.linalg.norm(after - before, axis=1) * mm_per_px / magnification))
        yield frame, FrameTruth(opacified, mean_concentration, moved, float(np.exp(-smear_mm / SHARP_SMEAR_MM)))
