"""The phantom's image side: anatomy, C-arm projection and the rendered cine loops.

Loops are rendered on a 128-pixel detector with 1.2 mm pixels (the same field of view as the
real 512-pixel one) so that the whole file runs in a few seconds.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from annotation.phantom.anatomy import build_coronary_tree, segments_present
from annotation.phantom.findings import AHA_SEGMENTS, Artery, Dominance, Lesion
from annotation.phantom.projection import LCA_VIEWS, RCA_VIEWS, CArmView, Geometry, project, vary_view
from annotation.phantom.rendering import FrameTruth, LoopSpec, contrast_concentration, render_loop

SMALL = Geometry(detector_px=128, detector_pixel_mm=1.2)
AP = CArmView("AP", 0.0, 0.0)


def tree_of(artery: Artery, lesions: tuple[Lesion, ...] = (), dominance: Dominance = Dominance.RIGHT, seed: int = 3):
    return build_coronary_tree(artery, dominance, lesions, np.random.default_rng(seed))


def spec_for(view: CArmView, **changes: object) -> LoopSpec:
    spec = LoopSpec(
        view=view,
        geometry=SMALL,
        frames=16,
        frame_rate=10.0,
        heart_rate_bpm=70.0,
        injection_start_s=0.25,
        flow_speed_mm_s=220.0,
        plateau_s=3.0,
        washout_s=1.0,
        seed=11,
    )
    return replace(spec, **changes)


def render(tree, spec: LoopSpec, seed: int = 5) -> tuple[np.ndarray, list[FrameTruth]]:
    frames, truths = [], []
    for frame, truth in render_loop(tree, spec, np.random.default_rng(seed)):
        frames.append(frame)
        truths.append(truth)
    return np.array(frames), truths


# --- projection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("view", [*LCA_VIEWS, *RCA_VIEWS])
def test_the_isocentre_projects_to_the_detector_centre(view: CArmView) -> None:
    geometry = Geometry()
    pixels, magnification = project(np.zeros((1, 3)), view, geometry)
    assert pixels[0] == pytest.approx([255.5, 255.5])
    assert magnification[0] == pytest.approx(geometry.sid_mm / geometry.sod_mm)


def test_ap_shows_the_patient_left_on_the_right_and_the_head_at_the_top() -> None:
    pixels, _ = project(np.array([[50.0, 0.0, 0.0], [0.0, 0.0, 50.0]]), AP, Geometry())
    assert pixels[0, 0] > 255.5  # patient's left: image right
    assert pixels[1, 1] < 255.5  # towards the head: image top


def test_lao_and_rao_move_a_left_anterior_point_in_opposite_directions() -> None:
    apex_like = np.array([[40.0, -40.0, -20.0]])  # left, anterior, a little inferior
    ap_column = project(apex_like, AP, Geometry())[0][0, 0]
    lao_column = project(apex_like, CArmView("LAO 40", 40.0, 0.0), Geometry())[0][0, 0]
    rao_column = project(apex_like, CArmView("RAO 40", -40.0, 0.0), Geometry())[0][0, 0]
    assert np.sign(lao_column - ap_column) == -np.sign(rao_column - ap_column) != 0


def test_points_nearer_the_source_are_magnified_more() -> None:
    # At AP the source is under the table (posterior, +y).
    _, magnification = project(np.array([[0.0, 80.0, 0.0], [0.0, -80.0, 0.0]]), AP, Geometry())
    assert magnification[0] > magnification[1]


def test_a_varied_view_stays_near_the_standard_one() -> None:
    view = vary_view(LCA_VIEWS[3], np.random.default_rng(0), spread_deg=5.0)
    assert abs(view.primary_deg - 45) <= 5
    assert abs(view.secondary_deg + 30) <= 5
    assert view.name.startswith("LAO")
    assert "CAU" in view.name


# --- anatomy --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dominance", list(Dominance))
@pytest.mark.parametrize("artery", list(Artery))
def test_every_segment_the_anatomy_promises_is_drawn(artery: Artery, dominance: Dominance) -> None:
    tree = tree_of(artery, dominance=dominance)
    drawn = set(np.concatenate([branch.segments for branch in tree.branches]).tolist()) - {0}
    assert drawn == set(segments_present(artery, dominance))
    assert all(AHA_SEGMENTS[segment][1] is artery for segment in drawn)


def test_vessels_taper_and_side_branches_are_smaller() -> None:
    tree = tree_of(Artery.LCA)
    lm, lad = tree.branch_named("LM"), tree.branch_named("LAD")
    assert lm.radius_mm[0] > lad.radius_mm[0] > lad.radius_mm[-1]
    assert lad.radius_mm[-1] < 0.6 * lad.radius_mm[0]
    assert tree.branch_named("D1").radius_mm[0] < lad.radius_mm[0]
    for branch in tree.branches[1:]:
        parent = tree.branches[branch.parent]
        assert np.allclose(branch.points_mm[0], parent.points_mm[branch.parent_point])


def test_a_lesion_narrows_its_segment_to_the_graded_lumen() -> None:
    lesion = Lesion(segment=7, stenosis_pct=90, length_mm=10.0, position=0.5)
    patent, stenosed = tree_of(Artery.LCA), tree_of(Artery.LCA, (lesion,))
    before, after = patent.branch_named("LAD").radius_mm, stenosed.branch_named("LAD").radius_mm
    ratio = after / before
    narrowest = int(np.argmin(ratio))
    assert ratio[narrowest] == pytest.approx(0.1, abs=0.02)
    assert stenosed.branch_named("LAD").segments[narrowest] == 7
    assert np.sum(ratio < 0.99) * 0.5 <= lesion.length_mm + 1.0  # only over the lesion's length


def test_a_lesion_where_the_anatomy_has_no_such_segment_is_refused() -> None:
    with pytest.raises(ValueError, match="segment 15"):
        tree_of(Artery.LCA, (Lesion(segment=15, stenosis_pct=75, length_mm=8.0, position=0.5),))


def test_the_same_generator_seed_gives_one_heart_for_both_arteries() -> None:
    lca, rca = tree_of(Artery.LCA, seed=9), tree_of(Artery.RCA, seed=9)
    assert lca.heart.scale == rca.heart.scale
    assert np.allclose(lca.heart.long_axis, rca.heart.long_axis)


# --- rendering ------------------------------------------------------------------------------------


def test_same_seed_renders_identical_frames() -> None:
    tree = tree_of(Artery.RCA)
    spec = spec_for(RCA_VIEWS[0], frames=5)
    first, _ = render(tree, spec, seed=1)
    again, _ = render(tree, spec, seed=1)
    other, _ = render(tree, spec, seed=2)
    assert first.dtype == np.float32
    assert first.shape == (5, 128, 128)
    assert first.min() >= 0.0
    assert first.max() <= 1.0
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_default_geometry_renders_512_pixel_frames() -> None:
    frame, truth = next(
        render_loop(tree_of(Artery.LCA), spec_for(LCA_VIEWS[0], geometry=Geometry()), np.random.default_rng(0))
    )
    assert frame.shape == (512, 512)
    assert frame.dtype == np.float32
    assert 0.0 <= truth.sharpness <= 1.0


def test_contrast_fills_the_tree_and_darkens_the_frame() -> None:
    frames, truths = render(tree_of(Artery.LCA), spec_for(LCA_VIEWS[0]))
    filled = [truth.opacified_fraction for truth in truths]
    assert filled[0] < 0.02
    assert max(filled[10:]) > 0.9
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(filled))  # the front only advances
    means = frames.reshape(len(frames), -1).mean(axis=1)
    assert means[12:].mean() < means[:2].mean() - 0.002


def test_an_unfilled_run_never_opacifies_the_tree() -> None:
    for seed in range(4):  # both kinds: catheter only, and a puff missing the ostium
        _, truths = render(tree_of(Artery.RCA), spec_for(RCA_VIEWS[1], filled=False, frames=12), seed=seed)
        assert max(truth.opacified_fraction for truth in truths) < 0.02
        assert max(truth.mean_concentration for truth in truths) == 0.0


def test_contrast_washes_out_from_the_ostium_first() -> None:
    tree = tree_of(Artery.RCA)
    spec = spec_for(RCA_VIEWS[0], plateau_s=1.0, washout_s=0.5, frames=40)
    rca = 0  # the main trunk, ostium to crux
    during = contrast_concentration(tree, spec, t=1.45)[rca]
    later = contrast_concentration(tree, spec, t=2.0)[rca]
    assert during.min() > 0.9
    assert later[0] < 0.1
    assert later[-1] > later[0]


def test_a_total_occlusion_leaves_the_distal_vessel_unfilled() -> None:
    occlusion = Lesion(segment=2, stenosis_pct=100, length_mm=8.0, position=0.5)
    occluded, patent = tree_of(Artery.RCA, (occlusion,)), tree_of(Artery.RCA)
    spec = spec_for(RCA_VIEWS[0])
    plateau = contrast_concentration(occluded, spec, t=1.4)
    rca = occluded.branch_named("RCA")
    assert plateau[0][rca.segments == 1].min() > 0.9
    assert plateau[0][rca.segments == 3].max() == 0.0
    pda = next(i for i, branch in enumerate(occluded.branches) if branch.name == "PDA")
    assert plateau[pda].max() == 0.0
    frames_occluded, truths_occluded = render(occluded, spec)
    frames_patent, truths_patent = render(patent, spec)
    assert truths_occluded[-1].opacified_fraction < truths_patent[-1].opacified_fraction - 0.2
    assert frames_occluded[-1].mean() > frames_patent[-1].mean()  # less of the tree darkens the image


def test_rca_and_lca_take_different_shapes_in_the_same_view() -> None:
    def vessel_mask(artery: Artery) -> np.ndarray:
        frames, _ = render(tree_of(artery), spec_for(AP, frames=14))
        darkened = frames[:2].mean(axis=0) - frames[-3:].mean(axis=0)
        mask = darkened > 0.06
        grown = mask.copy()  # a little dilation, so near-misses count as overlap
        for axis in (0, 1):
            grown |= np.roll(grown, 1, axis) | np.roll(grown, -1, axis)
        return grown

    lca, rca = vessel_mask(Artery.LCA), vessel_mask(Artery.RCA)
    assert lca.sum() > 150
    assert rca.sum() > 150
    overlap = (lca & rca).sum() / (lca | rca).sum()
    assert overlap < 0.25


def test_systole_moves_the_vessels_and_blurs_them() -> None:
    _, truths = render(tree_of(Artery.RCA), spec_for(RCA_VIEWS[0], frame_rate=30.0, frames=30, heart_rate_bpm=90.0))
    motion = np.array([truth.motion_px_per_frame for truth in truths])
    sharpness = np.array([truth.sharpness for truth in truths])
    assert motion.max() > 3 * motion.min()  # fast systole, still diastasis
    assert np.corrcoef(motion, sharpness)[0, 1] < -0.5
