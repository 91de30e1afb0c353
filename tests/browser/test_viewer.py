"""The cine viewer in a real browser: load, play, step, label with the keyboard, undo; and an
admin deciding a disputed frame on the adjudication page."""

from __future__ import annotations

import time

import pytest

from annotation.ingest import ingest_paths
from annotation.labels import submit_label
from annotation.models import AnnotationMode, AnnotationProject, CineLoop, FinalLabel, FinalLabelMethod, FrameLabel
from tests.browser.conftest import log_in
from tests.factories import ModelVersionFactory, make_prelabel

pytestmark = pytest.mark.browser

REAL_LOOP = "0002.DCM"  # 96 frames of a right coronary artery, 13 of them sampled
SECOND_LOOP = "XA-MONO2-8-12x-catheter.dcm"  # 12 frames, another exam


def ingest_real_loop(xa_dir, *others: str) -> CineLoop:
    report = ingest_paths([xa_dir / REAL_LOOP, *(xa_dir / name for name in others)])
    assert report.ok, report.results
    return CineLoop.objects.get(frame_count=96)


def frame_number(page) -> int:
    return int(page.inner_text("[data-testid=frame-number]"))


RECORD_FRAME_CHANGES = """() => {
  const number = document.querySelector("[data-testid=frame-number]");
  window.__frames = [];
  new MutationObserver(() => window.__frames.push([performance.now(), Number(number.textContent)]))
    .observe(number, { childList: true, characterData: true, subtree: true });
}"""


def playback_rate(page, changes: int = 25) -> float:
    """Frames per second shown while playing from the first frame: the frame number's rise
    over the time it took, from the first change seen to the last before any wrap round. Over
    most of a second, one late animation frame moves the result by a few per cent only."""
    page.keyboard.press("Home")
    page.evaluate("window.__frames = []")
    page.keyboard.press("Space")
    page.wait_for_function(f"window.__frames.length >= {changes}")
    page.keyboard.press("Space")
    page.wait_for_selector("#viewer[data-playing=false]")
    records = page.evaluate("window.__frames")
    run = [records[0]]
    for record in records[1:]:
        if record[1] < run[-1][1]:
            break
        if record[1] > run[-1][1]:  # the pause writes the same number again
            run.append(record)
    (t0, first), (t1, last) = run[0], run[-1]
    return (last - first) / (t1 - t0) * 1000


def wait_until_ready(page) -> None:
    page.wait_for_selector("#viewer[data-state=ready]", timeout=60_000)


def wait_until_saved(page) -> None:
    page.wait_for_selector("#viewer[data-pending='0']:not([data-undoing=true])")


def test_physician_plays_steps_and_labels_with_the_keyboard(live_server, page, physician, xa_dir, artifacts):
    loop = ingest_real_loop(xa_dir, SECOND_LOOP)
    second_loop = CineLoop.objects.exclude(pk=loop.pk).get()
    log_in(page, live_server, physician.username, "pw-" + physician.username)
    page.goto(f"{live_server.url}/label/loops/{loop.uuid}/")
    wait_until_ready(page)
    assert page.get_attribute("#viewer", "data-loaded") == str(loop.frame_count)
    # Once this loop is ready, the next loop's frames are fetched ahead.
    page.wait_for_selector(f"#viewer[data-prefetched='{second_loop.frame_count}']")

    # Playback: the frame number on the overlay moves on by itself, and stops on pause.
    start = frame_number(page)
    page.keyboard.press("Space")
    page.wait_for_function("Number(document.querySelector('[data-testid=frame-number]').textContent) >= 40")
    page.screenshot(path=str(artifacts / "viewer-playing.png"))
    page.keyboard.press("Space")
    page.wait_for_selector("#viewer[data-playing=false]")
    paused = frame_number(page)
    assert paused != start

    # ... at the acquisition's rate (FrameTime 33 ms: 30.3 frames a second), and twice that at 2x.
    page.evaluate(RECORD_FRAME_CHANGES)
    assert 26 < playback_rate(page) < 35
    page.keyboard.press("]")
    page.keyboard.press("]")
    assert page.inner_text("#ov-speed") == "2×"
    assert 52 < playback_rate(page) < 69

    # Ping-pong: from the last frame, playback turns back instead of starting over.
    page.keyboard.press("l")
    page.keyboard.press("End")
    page.evaluate("window.__frames = []")
    page.keyboard.press("Space")
    page.wait_for_function("new Set(window.__frames.map((r) => r[1])).size >= 5")
    page.keyboard.press("Space")
    shown = [number for _, number in page.evaluate("window.__frames")]
    shown = [n for i, n in enumerate(shown) if i == 0 or n != shown[i - 1]]
    assert shown[:5] == sorted(shown[:5], reverse=True)
    assert loop.frame_count - 12 < shown[4] < shown[0] < loop.frame_count - 1
    page.keyboard.press("l")
    assert page.inner_text("#ov-playmode") == "loop"
    page.keyboard.press("Home")
    paused = frame_number(page)

    # Stepping: one frame on, one back.
    page.keyboard.press("ArrowRight")
    assert frame_number(page) == (paused + 1) % loop.frame_count
    page.keyboard.press("ArrowLeft")
    assert frame_number(page) == paused

    # Window/level by dragging with either button, presets, invert, zoom and reset, as the
    # overlay reports them.
    stage = page.locator("#stage").bounding_box()
    x, y = stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 60, y - 40, steps=4)
    page.mouse.up()
    after_left = page.inner_text("#ov-wl")
    assert after_left != "W 255 L 128"
    page.mouse.down(button="right")
    page.mouse.move(x - 120, y - 80, steps=4)
    page.mouse.up(button="right")
    assert page.inner_text("#ov-wl") not in ("W 255 L 128", after_left)
    page.click("[data-preset=high]")
    assert page.inner_text("#ov-wl") == "W 140 L 115"
    page.keyboard.press("i")
    assert page.inner_text("#ov-wl") == "W 140 L 115 · inv"
    page.mouse.move(x, y)  # back over the image from the preset button
    page.mouse.wheel(0, -300)
    page.wait_for_function("document.querySelector('#ov-zoom').textContent !== '100 %'")
    page.keyboard.press("r")
    assert (page.inner_text("#ov-wl"), page.inner_text("#ov-zoom")) == ("W 255 L 128", "100 %")
    assert frame_number(page) == paused  # none of it moved the frame

    # Label ten sampled frames with the keyboard alone: U finds the first unlabelled sampled
    # frame, and each label moves on to the next sampled frame.
    page.keyboard.press("u")
    sampled = set(loop.frames.filter(is_sampled=True).values_list("index", flat=True))
    labelled = []
    for i in range(10):
        here = frame_number(page)
        assert here in sampled
        labelled.append(here)
        page.keyboard.press(str(i % 6 + 1))
        page.wait_for_function(f"document.querySelector('[data-testid=frame-number]').textContent !== '{here}'")
    wait_until_saved(page)
    page.keyboard.press("Shift+N")  # back to the last frame labelled, to see the label on it
    assert frame_number(page) == labelled[-1]
    page.screenshot(path=str(artifacts / "viewer-labelled.png"))

    page.keyboard.press("z")
    page.wait_for_selector("#viewer[data-labelled-count='9']")
    wait_until_saved(page)
    assert frame_number(page) == labelled[-1]  # undo shows the frame it changed

    page.keyboard.press("?")
    page.wait_for_selector("#shortcuts[open]")
    page.screenshot(path=str(artifacts / "viewer-help.png"))
    page.keyboard.press("Escape")

    labels = FrameLabel.objects.filter(physician=physician, withdrawn_at=None).select_related("frame")
    assert sorted(label.frame.index for label in labels) == sorted(labelled[:9])
    assert all(label.seconds_spent > 0 for label in labels)

    # G opens the next loop of the worklist.
    page.keyboard.press("g")
    page.wait_for_url(f"{live_server.url}/label/loops/{second_loop.uuid}/")
    wait_until_ready(page)
    assert page.js_errors == []


# Counts the label requests the page starts, at the moment it starts them.
def wait_for_held_request(page, held: list, timeout_s: float = 10) -> None:
    """Wait until the route handler holds a request.

    The page counts its request the moment it calls fetch; the route reaches the Python handler
    only when Playwright next delivers its events, which ``wait_for_timeout`` lets it do.
    """
    deadline = time.monotonic() + timeout_s
    while not held:
        assert time.monotonic() < deadline, "the label request never reached the route handler"
        page.wait_for_timeout(20)


COUNT_LABEL_REQUESTS = """
window.__labelPuts = 0;
const originalFetch = window.fetch;
window.fetch = (url, options) => {
  if (options?.method === "PUT" && String(url).includes("/my-label/")) window.__labelPuts++;
  return originalFetch(url, options);
};
"""


def test_double_press_labels_one_frame_and_a_second_label_waits_for_the_first(live_server, page, physician, xa_dir):
    loop = ingest_real_loop(xa_dir)
    first, second = list(loop.frames.filter(is_sampled=True).order_by("index"))[:2]
    page.add_init_script(COUNT_LABEL_REQUESTS)
    log_in(page, live_server, physician.username, "pw-" + physician.username)
    page.goto(f"{live_server.url}/label/loops/{loop.uuid}/")
    wait_until_ready(page)
    assert frame_number(page) == first.index

    # A double press labels the frame once and does not label the next one unseen.
    page.keyboard.press("4")
    page.keyboard.press("4")
    wait_until_saved(page)
    assert frame_number(page) == second.index
    assert page.evaluate("window.__labelPuts") == 1
    assert [(label.frame_id, label.class_name) for label in FrameLabel.objects.all()] == [(first.pk, "RCA_better")]

    # A second label of a frame while its first is still on the way is held back, then sent
    # as a change of the saved label: never two creates at once.
    held = []
    hold = True
    page.route("**/my-label/", lambda route: held.append(route) if hold else route.continue_())
    page.keyboard.press("1")  # second frame, LCA better; the request is held
    page.keyboard.press("Shift+N")  # back to it
    assert frame_number(page) == second.index
    page.keyboard.press("2")  # LCA bad, while the first request is still open
    assert page.evaluate("window.__labelPuts") == 2
    wait_for_held_request(page, held)
    assert len(held) == 1
    hold = False
    held[0].continue_()
    wait_until_saved(page)
    assert page.evaluate("window.__labelPuts") == 3
    label = FrameLabel.objects.get(frame=second)
    assert (label.class_name, label.version) == ("LCA_bad", 2)
    assert sorted(label.events.values_list("action", flat=True)) == ["changed", "created"]
    assert page.js_errors == []


def test_a_label_changed_elsewhere_shows_the_servers_message_and_the_current_label(
    live_server, page, physician, xa_dir
):
    loop = ingest_real_loop(xa_dir)
    first = loop.frames.filter(is_sampled=True).order_by("index").first()
    log_in(page, live_server, physician.username, "pw-" + physician.username)
    page.goto(f"{live_server.url}/label/loops/{loop.uuid}/")
    wait_until_ready(page)
    page.keyboard.press("1")
    wait_until_saved(page)

    # The same physician changes the label in another tab.
    submit_label(first, physician, "RCA", "other", expected_version=1)

    page.keyboard.press("Shift+N")
    assert frame_number(page) == first.index
    page.keyboard.press("2")
    toast = page.wait_for_selector(".toast--warn")
    assert "changed elsewhere" in toast.inner_text()
    wait_until_saved(page)
    page.keyboard.press("Shift+N")
    assert page.inner_text("#my-label-value") == "RCA · Other"
    label = FrameLabel.objects.get(frame=first)
    assert (label.class_name, label.version) == ("RCA_other", 2)


def test_admin_sees_a_disputed_frame_and_adjudicates_it(
    live_server, page, admin_user, physician, other_physician, xa_dir, artifacts
):
    loop = ingest_real_loop(xa_dir)
    disputed = loop.frames.filter(is_sampled=True).order_by("index")[2]
    submit_label(disputed, physician, "RCA", "better")
    submit_label(disputed, other_physician, "RCA", "bad")
    log_in(page, live_server, admin_user.username, "pw-" + admin_user.username)

    # The viewer marks the disputed frame for an admin, and offers no labelling.
    page.goto(f"{live_server.url}/label/loops/{loop.uuid}/")
    wait_until_ready(page)
    assert page.locator(".strip__item.is-disputed").count() == 1
    assert page.locator(".class-btn").count() == 0
    page.locator(".strip__item.is-disputed button").click()
    assert frame_number(page) == disputed.index
    page.screenshot(path=str(artifacts / "viewer-admin-disputed.png"))

    page.goto(f"{live_server.url}/label/adjudication/")
    page.get_by_role("link", name="Decide").click()
    page.get_by_label("RCA (right coronary artery)").check()
    page.get_by_label("Better").check()
    page.fill("textarea[name=note]", "Fully opacified right coronary artery.")
    page.get_by_role("button", name="Decide").click()
    page.wait_for_url(f"{live_server.url}/label/adjudication/")

    final = FinalLabel.objects.get(frame=disputed)
    assert (final.laterality, final.category, final.method) == ("RCA", "better", FinalLabelMethod.ADJUDICATION)
    assert final.decided_by == admin_user
    assert page.js_errors == []


def test_admin_creates_a_project_and_moves_an_exam_into_it(live_server, page, admin_user, xa_dir, artifacts):
    loop = ingest_real_loop(xa_dir, SECOND_LOOP)
    log_in(page, live_server, admin_user.username, "pw-" + admin_user.username)

    page.goto(f"{live_server.url}/label/data/#projects")
    page.fill("#id_new-name", "Assisted pilot")
    page.select_option("#id_new-mode", "assisted")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url("**/label/data/#projects")
    page.check(f"#exam-{loop.exam.uuid}")
    page.select_option("#id_project", label="Assisted pilot")
    page.get_by_role("button", name="Move").click()
    page.wait_for_url("**/label/data/#exams")

    assert "1 exam moved to Assisted pilot." in page.inner_text("#exams")
    page.screenshot(path=str(artifacts / "label-data-projects.png"), full_page=True)
    loop.exam.refresh_from_db()
    assert (loop.exam.project.name, loop.exam.project.mode) == ("Assisted pilot", "assisted")
    assert page.js_errors == []


def test_assisted_mode_shows_the_models_pre_label_and_enter_accepts_it(live_server, page, physician, xa_dir, artifacts):
    loop = ingest_real_loop(xa_dir)
    project = AnnotationProject.objects.create(name="Assisted", mode=AnnotationMode.ASSISTED)
    loop.exam.project = project
    loop.exam.save()
    model = ModelVersionFactory(is_active=True, version=3)
    for frame in loop.frames.filter(is_sampled=True):
        make_prelabel(frame, model, best="RCA_bad", p=0.9)
    log_in(page, live_server, physician.username, "pw-" + physician.username)

    page.goto(f"{live_server.url}/label/loops/{loop.uuid}/")
    wait_until_ready(page)
    page.keyboard.press("n")  # to the first sampled frame
    page.wait_for_selector("#prelabel:not([hidden])")

    assert page.inner_text("#prelabel-value") == "RCA · Bad · 90 %"
    assert page.inner_text("[data-testid=prelabel-model]") == "by convnext_atto v3"
    page.screenshot(path=str(artifacts / "viewer-assisted.png"))
    shown = frame_number(page)
    page.keyboard.press("Enter")
    wait_until_saved(page)
    label = FrameLabel.objects.get(physician=physician)
    assert (label.frame.index, label.class_name) == (shown, "RCA_bad")
    assert page.js_errors == []
