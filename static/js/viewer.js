// The cine viewer and labelling page (templates/annotation/viewer.html).
//
// One ES module, no framework and no build step. It loads the loop's workspace from the API,
// decodes every frame into an ImageBitmap before playback starts, plays the loop on a canvas
// at the acquisition's timing, and sends the physician's labels to the label endpoints.
//
// Sections: helpers · API · toasts · frame loading · player · view (zoom, pan, window/level)
// · labels (queue per frame, time on frame) · page rendering · keyboard and mouse · start.

const config = JSON.parse(document.getElementById("viewer-config").textContent);

// --- helpers ---------------------------------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
const clamp = (value, low, high) => Math.min(high, Math.max(low, value));

function element(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// Physicians label; an admin may look at the loop but the label endpoints refuse them.
const canLabel = Boolean(config.can_label);
const CATEGORY_LABEL = Object.fromEntries(config.classes.map((c) => [c.category, c.category_label]));

function classText(laterality, category) {
  return `${laterality} · ${CATEGORY_LABEL[category] ?? category}`;
}

// --- API ---------------------------------------------------------------------------------------

function csrfToken() {
  const cookie = document.cookie.split("; ").find((row) => row.startsWith("csrftoken="));
  if (cookie) return decodeURIComponent(cookie.slice("csrftoken=".length));
  return $("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

function frameUrl(template, frameUuid) {
  return template.replace(config.placeholder_uuid, frameUuid);
}

/** A JSON request; resolves to {status, data} (data null when the body is not JSON). */
async function api(method, url, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    return { status: 0, data: { detail: "The server could not be reached; check the connection." } };
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  return { status: response.status, data };
}

/** The message a person should read from an error response. */
function errorMessage(result, fallback) {
  const data = result.data;
  if (result.status === 403) return data?.detail ?? "Your session ended or your role does not allow this; log in again.";
  if (!data) return fallback;
  if (typeof data.detail === "string") return data.detail;
  const parts = [];
  for (const [field, messages] of Object.entries(data)) {
    parts.push(`${field}: ${[].concat(messages).join(" ")}`);
  }
  return parts.length ? parts.join("; ") : fallback;
}

// --- toasts ------------------------------------------------------------------------------------

const toastRegion = $("#toasts");

function toast(message, kind = "info", timeoutMs = 5000) {
  const node = element("div", { class: `toast toast--${kind}`, text: message });
  node.addEventListener("click", () => node.remove());
  toastRegion.append(node);
  while (toastRegion.children.length > 4) toastRegion.firstElementChild.remove();
  setTimeout(() => node.remove(), timeoutMs);
}

// --- state -------------------------------------------------------------------------------------

const viewerNode = $("#viewer");
const state = {
  loop: null,
  mode: "blinded",
  frames: [], // the workspace's frame entries
  byUuid: new Map(),
  bitmaps: [],
  index: 0,
  playing: false,
  speed: 1,
  playMode: "loop", // or "pingpong"
  direction: 1,
  clock: 0, // ms into the loop
  offsets: [], // per-frame start time in ms, from 0
  duration: 0,
  nextLoop: config.next_loop,
  view: { zoom: 1, panX: 0, panY: 0, width: 1, level: 0.5, invert: false, preset: "default" },
  drafts: new Map(), // notes typed for frames that have no label yet
};

const SPEEDS = [0.25, 0.5, 0.75, 1, 1.5, 2];
const PRESETS = {
  default: { width: 1, level: 0.5 },
  high: { width: 0.55, level: 0.45 },
  soft: { width: 1.5, level: 0.5 },
};
const PRESET_ORDER = ["default", "high", "soft"];

// --- frame loading -------------------------------------------------------------------------------

const PARALLEL_DOWNLOADS = 6;
// Every frame is held decoded (4 bytes a pixel) so that playback never waits on the network or
// a decoder. A typical loop (100 frames of 512 x 512) takes 100 MB; a loop that would take more
// than this is decoded smaller, at the scale that fits, rather than exhausting the tab.
const DECODED_BUDGET_BYTES = 1.5 * 1024 ** 3;

/** The size to decode frames at: full size unless the whole loop would not fit the budget. */
function decodeSize(frameCount) {
  const { columns, rows } = config.frame_size ?? {};
  if (!columns || !rows || !frameCount) return null;
  const scale = Math.sqrt(DECODED_BUDGET_BYTES / (frameCount * columns * rows * 4));
  if (scale >= 1) return null;
  return {
    resizeWidth: Math.max(64, Math.floor(columns * scale)),
    resizeHeight: Math.max(64, Math.floor(rows * scale)),
    resizeQuality: "high",
  };
}

async function fetchBitmap(url, size) {
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const blob = await response.blob();
      if (typeof createImageBitmap === "function") return await (size ? createImageBitmap(blob, size) : createImageBitmap(blob));
      const image = new Image();
      image.src = URL.createObjectURL(blob);
      await image.decode();
      return image;
    } catch (error) {
      if (attempt >= 3) throw error;
    }
  }
}

/** Download and decode every frame, a few at a time, reporting progress. */
async function loadAllFrames(frames, onProgress) {
  const size = decodeSize(frames.length);
  if (size) {
    const held = `${size.resizeWidth} × ${size.resizeHeight}`;
    toast(`A long loop: its ${frames.length} frames are held at ${held} pixels to fit in memory.`, "info", 8000);
  }
  const bitmaps = new Array(frames.length);
  let next = 0;
  let done = 0;
  let failed = 0;
  async function worker() {
    while (next < frames.length) {
      const i = next++;
      try {
        bitmaps[i] = await fetchBitmap(frames[i].image_url, size);
      } catch {
        failed++;
      }
      done++;
      onProgress(done, frames.length);
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL_DOWNLOADS, frames.length) }, worker));
  return { bitmaps, failed };
}

/** Warm the browser's cache with the next loop's frames (immutable URLs), quietly. */
async function prefetchNextLoop() {
  const next = state.nextLoop;
  if (!next || !config.urls.workspace_template) return;
  const result = await api("GET", config.urls.workspace_template.replace(config.placeholder_uuid, next.uuid));
  if (result.status !== 200 || !result.data?.frames) return;
  const urls = result.data.frames.map((f) => f.image_url);
  let i = 0;
  async function worker() {
    while (i < urls.length) {
      const url = urls[i++];
      try {
        const response = await fetch(url, { credentials: "same-origin", priority: "low" });
        await response.blob();
      } catch {
        // A prefetch is only a head start: the next page loads what is missing.
      }
    }
  }
  await Promise.all([worker(), worker()]);
  viewerNode.dataset.prefetched = String(urls.length);
}

// --- player ------------------------------------------------------------------------------------

/** Per-frame start times: the stored offsets where they increase (FrameTimeVector gives
 * unequal steps), else the nominal frame time. */
function frameTimes(frames, frameTimeMs) {
  const nominal = frameTimeMs > 0 ? frameTimeMs : 1000 / 15;
  const raw = frames.map((f) => Number(f.time_offset_ms));
  const usable = raw.every((t, i) => Number.isFinite(t) && (i === 0 || t > raw[i - 1]));
  const offsets = usable ? raw.map((t) => t - raw[0]) : frames.map((_, i) => i * nominal);
  const last = offsets.length > 1 ? offsets[offsets.length - 1] - offsets[offsets.length - 2] : nominal;
  return { offsets, duration: (offsets[offsets.length - 1] ?? 0) + (usable ? last : nominal) };
}

function frameAtTime(ms) {
  const offsets = state.offsets;
  let low = 0;
  let high = offsets.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if (offsets[mid] <= ms) low = mid;
    else high = mid - 1;
  }
  return low;
}

let lastTick = null;
// Each play() starts one chain of animation frames; a pause and play within one frame must
// not leave the old chain running beside the new one (the loop would run at twice the speed).
let playToken = 0;

function tick(now, token) {
  if (!state.playing || token !== playToken) return;
  if (lastTick !== null) {
    let clock = state.clock + (now - lastTick) * state.speed * state.direction;
    const end = state.duration;
    if (state.playMode === "loop") {
      clock = ((clock % end) + end) % end;
    } else {
      // Ping-pong turns at either end; a long pause in the tab never jumps more than one turn.
      if (clock >= end) {
        clock = Math.max(0, 2 * end - clock - 1e-6);
        state.direction = -1;
      } else if (clock < 0) {
        clock = Math.min(end - 1e-6, -clock);
        state.direction = 1;
      }
    }
    state.clock = clock;
    const index = frameAtTime(clock);
    if (index !== state.index) showFrame(index, { fromPlayer: true });
  }
  lastTick = now;
  requestAnimationFrame((next) => tick(next, token));
}

function play() {
  if (viewerNode.dataset.state !== "ready" || state.playing || state.frames.length < 2) return;
  state.playing = true;
  // Start from the frame on screen (its start going forward, its end going back), not from
  // wherever the clock stopped.
  const i = state.index;
  const end = i + 1 < state.offsets.length ? state.offsets[i + 1] : state.duration;
  state.clock = state.direction > 0 ? state.offsets[i] + 1e-3 : end - 1e-3;
  lastTick = null;
  const token = ++playToken;
  requestAnimationFrame((now) => tick(now, token));
  renderPlayState();
}

function pause() {
  if (!state.playing) return;
  state.playing = false;
  renderPlayState();
  renderFrameInfo();
}

function togglePlay() {
  if (state.playing) pause();
  else play();
}

function setSpeed(speed) {
  state.speed = speed;
  $("#speed").value = String(speed);
  $("#ov-speed").textContent = `${speed}×`;
}

function stepSpeed(delta) {
  const i = SPEEDS.indexOf(state.speed);
  setSpeed(SPEEDS[clamp((i < 0 ? 3 : i) + delta, 0, SPEEDS.length - 1)]);
}

function setPlayMode(mode) {
  state.playMode = mode;
  state.direction = 1;
  $$(".seg__btn[data-action^=mode-]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.action === `mode-${mode}`)));
  $("#ov-playmode").textContent = mode === "loop" ? "loop" : "ping-pong";
}

// --- view: zoom, pan, window/level -------------------------------------------------------------

const canvas = $("#cine");
const context = canvas.getContext("2d", { alpha: true });
const stage = $("#stage");
let stageSize = { width: 1, height: 1 };
let drawQueued = false;

function resizeCanvas() {
  const rect = stage.getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  stageSize = { width: Math.max(1, rect.width), height: Math.max(1, rect.height) };
  canvas.width = Math.round(stageSize.width * ratio);
  canvas.height = Math.round(stageSize.height * ratio);
  canvas.style.width = `${stageSize.width}px`;
  canvas.style.height = `${stageSize.height}px`;
  draw();
}

/** Where the image lies on the stage, in CSS pixels. */
function imageBox(bitmap) {
  const { zoom, panX, panY } = state.view;
  const fit = Math.min(stageSize.width / bitmap.width, stageSize.height / bitmap.height);
  const scale = fit * zoom;
  const width = bitmap.width * scale;
  const height = bitmap.height * scale;
  return {
    x: (stageSize.width - width) / 2 + panX,
    y: (stageSize.height - height) / 2 + panY,
    width,
    height,
    scale,
  };
}

function draw() {
  const ratio = window.devicePixelRatio || 1;
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, stageSize.width, stageSize.height);
  const bitmap = state.bitmaps[state.index];
  if (!bitmap) return;
  const box = imageBox(bitmap);
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, box.x, box.y, box.width, box.height);
}

function requestDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    draw();
  });
}

const transferFunctions = $$("#wl-filter feFuncR, #wl-filter feFuncG, #wl-filter feFuncB");

/** Window/level and invert as one linear map of the displayed grey value x in [0, 1]:
 * (x - level) / width + 0.5, mirrored when inverted. Done by an SVG filter on the canvas: exact
 * (a chain of CSS brightness() and contrast() clamps between its steps) and free per frame. */
function applyWindowLevel() {
  const { width, level, invert, zoom } = state.view;
  let slope = 1 / width;
  let intercept = 0.5 - level / width;
  if (invert) {
    slope = -slope;
    intercept = 1 - intercept;
  }
  for (const fn of transferFunctions) {
    fn.setAttribute("slope", slope.toFixed(5));
    fn.setAttribute("intercept", intercept.toFixed(5));
  }
  const identity = width === 1 && level === 0.5 && !invert;
  canvas.style.filter = identity ? "none" : "url(#wl-filter)";
  $("#ov-wl").textContent = `W ${Math.round(width * 255)} L ${Math.round(level * 255)}${invert ? " · inv" : ""}`;
  $("#ov-zoom").textContent = `${Math.round(zoom * 100)} %`;
  $("#invert-button").setAttribute("aria-pressed", String(invert));
  $$(".seg__btn[data-preset]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.preset === state.view.preset)));
}

function setPreset(name) {
  Object.assign(state.view, PRESETS[name], { preset: name });
  applyWindowLevel();
}

function cyclePreset() {
  const i = PRESET_ORDER.indexOf(state.view.preset);
  setPreset(PRESET_ORDER[(i + 1) % PRESET_ORDER.length]);
}

function toggleInvert() {
  state.view.invert = !state.view.invert;
  applyWindowLevel();
}

function resetView() {
  Object.assign(state.view, { zoom: 1, panX: 0, panY: 0, invert: false }, PRESETS.default, { preset: "default" });
  applyWindowLevel();
  requestDraw();
}

function zoomAt(factor, clientX, clientY) {
  const bitmap = state.bitmaps[state.index];
  if (!bitmap) return;
  const rect = stage.getBoundingClientRect();
  const px = clientX - rect.left;
  const py = clientY - rect.top;
  const before = imageBox(bitmap);
  const u = (px - before.x) / before.scale;
  const v = (py - before.y) / before.scale;
  state.view.zoom = clamp(state.view.zoom * factor, 0.5, 12);
  const after = imageBox(bitmap);
  // Keep the image point under the cursor where it was.
  state.view.panX += px - (after.x + u * after.scale);
  state.view.panY += py - (after.y + v * after.scale);
  applyWindowLevel();
  requestDraw();
}

// --- labels: one request in flight per frame, time spent on each frame --------------------------

/** Seconds each frame has been on screen while the tab was visible, since it was last sent. */
const dwell = {
  seconds: new Map(),
  current: null,
  since: null,
  flush() {
    if (this.current !== null && this.since !== null) {
      const now = performance.now();
      this.seconds.set(this.current, (this.seconds.get(this.current) ?? 0) + (now - this.since) / 1000);
      this.since = now;
    }
  },
  show(uuid) {
    this.flush();
    this.current = uuid;
    this.since = document.visibilityState === "visible" ? performance.now() : null;
  },
  visibility(visible) {
    this.flush();
    this.since = visible ? performance.now() : null;
  },
  take(uuid) {
    if (uuid === this.current) this.flush();
    const seconds = this.seconds.get(uuid) ?? 0;
    this.seconds.set(uuid, 0);
    return Math.round(seconds * 1000) / 1000;
  },
  giveBack(uuid, seconds) {
    this.seconds.set(uuid, (this.seconds.get(uuid) ?? 0) + seconds);
  },
};

// Labels go to the server one at a time, in the order they were typed. The server then
// records them in that order, so undo reverts the label typed last; and a frame never has two
// requests on the way, so a double key press or a quick relabel never sends two creates.
// A frame labelled again while its label still waits is moved to the back of the queue with
// its newest label (what was waiting for it is not sent).
const labelQueue = []; // frame uuids, in the order their labels were typed
const waitingLabels = new Map(); // frame uuid -> the label to send for it
let sending = null; // {uuid, label} of the request on the way
let idleWaiters = [];
// An undo or withdrawal on the way: labels typed meanwhile are sent after it. (Undo and
// withdraw first wait for the labels typed before them, so neither waits on the other.)
let exclusiveRequest = null;

/** Send an undo or a withdrawal after every label typed before it, and before any after. */
async function afterLabels(request) {
  await settleLabels();
  exclusiveRequest = request();
  try {
    return await exclusiveRequest;
  } finally {
    exclusiveRequest = null;
  }
}

function updatePendingCount() {
  viewerNode.dataset.pending = String(labelQueue.length + (sending ? 1 : 0));
}

function isSaving(frame) {
  return waitingLabels.has(frame.uuid) || sending?.uuid === frame.uuid;
}

/** The label the page shows for a frame: the newest typed while saving, else the stored one. */
function shownLabel(frame) {
  if (waitingLabels.has(frame.uuid)) return waitingLabels.get(frame.uuid);
  if (sending?.uuid === frame.uuid) return sending.label;
  return frame.my_label;
}

function isLabelled(frame) {
  return Boolean(shownLabel(frame));
}

function applyFrameState(entry) {
  const frame = state.byUuid.get(entry?.uuid);
  if (!frame) return null;
  frame.my_label = entry.my_label ?? null;
  frame.disputed = Boolean(entry.disputed);
  frame.prelabel = entry.prelabel ?? null;
  renderFrameMarks(frame);
  return frame;
}

async function refreshFrame(frame) {
  const result = await api("GET", frameUrl(config.urls.frame_state_template, frame.uuid));
  if (result.status === 200) applyFrameState(result.data);
  renderAll(frame);
}

function sameLabel(a, b) {
  return Boolean(a && b) && a.laterality === b.laterality && a.category === b.category && (a.note ?? "") === (b.note ?? "");
}

/** Label ``frame``; returns at once (the page shows the label as saving). */
function labelFrame(frame, laterality, category, note) {
  const current = shownLabel(frame);
  const wanted = {
    laterality,
    category,
    note: note ?? current?.note ?? state.drafts.get(frame.uuid) ?? "",
  };
  // Confirming the label the frame already has is not a change: nothing to send.
  if (!isSaving(frame) && sameLabel(wanted, frame.my_label)) return;
  const at = labelQueue.indexOf(frame.uuid);
  if (at >= 0) labelQueue.splice(at, 1);
  labelQueue.push(frame.uuid);
  waitingLabels.set(frame.uuid, wanted);
  updatePendingCount();
  renderAll(frame);
  sendWaitingLabels();
}

async function sendWaitingLabels() {
  if (sending) return;
  while (labelQueue.length) {
    const uuid = labelQueue.shift();
    const frame = state.byUuid.get(uuid);
    const label = waitingLabels.get(uuid);
    waitingLabels.delete(uuid);
    while (exclusiveRequest) await exclusiveRequest.catch(() => null);
    if (frame && label && !sameLabel(label, frame.my_label)) {
      sending = { uuid, label };
      updatePendingCount();
      await sendLabel(frame, label);
      sending = null;
    }
    updatePendingCount();
    if (frame) renderAll(frame);
  }
  const waiters = idleWaiters;
  idleWaiters = [];
  for (const resolve of waiters) resolve();
}

function dropWaitingLabel(frame) {
  waitingLabels.delete(frame.uuid);
  const at = labelQueue.indexOf(frame.uuid);
  if (at >= 0) labelQueue.splice(at, 1);
}

async function sendLabel(frame, label) {
  const seconds = dwell.take(frame.uuid);
  const result = await api("PUT", frameUrl(config.urls.my_label_template, frame.uuid), {
    laterality: label.laterality,
    category: label.category,
    note: label.note,
    seconds_spent: seconds,
    version: frame.my_label?.version ?? null,
  });
  if (result.status === 200) {
    applyFrameState(result.data);
    state.drafts.delete(frame.uuid);
    return;
  }
  // A label typed for this frame meanwhile was based on what turned out not to be its state.
  dropWaitingLabel(frame);
  if (result.status === 409) {
    toast(errorMessage(result, "This frame's label was changed elsewhere."), "warn", 7000);
    if (result.data?.state) applyFrameState(result.data.state);
    else await refreshFrame(frame);
  } else {
    dwell.giveBack(frame.uuid, seconds);
    toast(errorMessage(result, `Frame ${frame.index}: the label could not be saved.`), "error", 8000);
  }
}

/** Wait until every label typed so far is saved (undo must see them all). */
async function settleLabels() {
  while (sending || labelQueue.length) {
    await new Promise((resolve) => idleWaiters.push(resolve));
  }
}

let undoing = false;

async function undo() {
  if (undoing) return;
  undoing = true;
  viewerNode.dataset.undoing = "true";
  try {
    const result = await afterLabels(() => api("POST", config.urls.undo));
    if (result.status === 200) {
      const frame = applyFrameState(result.data);
      if (!frame) {
        // Undo goes back through all of my labels, and the last one was in another loop.
        toast(`Undone: your last label was on frame ${result.data?.index} of another loop.`, "info", 7000);
      } else {
        const label = frame.my_label;
        const now = label ? `back to ${classText(label.laterality, label.category)}` : "unlabelled again";
        toast(`Undone: frame ${frame.index} is ${now}.`, "info");
        pause();
        showFrame(frame.index);
      }
    } else if (result.status === 409) {
      toast(errorMessage(result, "That label was changed since; nothing was undone."), "warn", 7000);
      if (result.data?.state) applyFrameState(result.data.state);
    } else {
      toast(errorMessage(result, "Nothing to undo."), result.status === 404 ? "info" : "error");
    }
  } finally {
    undoing = false;
    viewerNode.dataset.undoing = "false";
    renderAll(currentFrame());
  }
}

async function withdraw(frame) {
  const result = await afterLabels(() => {
    if (!frame.my_label) return null;
    return api("DELETE", `${frameUrl(config.urls.my_label_template, frame.uuid)}?version=${frame.my_label.version}`);
  });
  if (!result) {
    toast(`Frame ${frame.index} has no label of yours to withdraw.`, "info");
    return;
  }
  if (result.status === 200 && result.data?.uuid) applyFrameState(result.data);
  else if (result.status === 204) frame.my_label = null;
  else if (result.status === 409) {
    toast(errorMessage(result, "This frame's label was changed elsewhere."), "warn", 7000);
    if (result.data?.state) applyFrameState(result.data.state);
    else await refreshFrame(frame);
  } else toast(errorMessage(result, "The label could not be withdrawn."), "error");
  renderAll(frame);
}

/** The pre-label as {laterality, category, probability}, whatever shape the API sends. */
function readPrelabel(prelabel) {
  if (!prelabel) return null;
  let laterality = prelabel.laterality;
  let category = prelabel.category;
  let probability = prelabel.probability ?? null;
  const named = prelabel.predicted_class ?? prelabel.class_name;
  if ((!laterality || !category) && typeof named === "string" && named.includes("_")) {
    [laterality, category] = named.split("_");
  }
  const probabilities = prelabel.probabilities;
  if (probabilities && typeof probabilities === "object") {
    if (!laterality || !category) {
      const best = Object.entries(probabilities).sort((a, b) => b[1] - a[1])[0];
      if (best) [laterality, category] = best[0].split("_");
    }
    probability ??= probabilities[`${laterality}_${category}`] ?? null;
  }
  if (!laterality || !category) return null;
  return { laterality, category, probability, model: prelabel.model_version ?? null };
}

function acceptPrelabel() {
  const frame = currentFrame();
  const suggestion = state.mode === "assisted" ? readPrelabel(frame?.prelabel) : null;
  if (!suggestion) return false;
  labelAndAdvance(suggestion.laterality, suggestion.category);
  return true;
}

function labelAndAdvance(laterality, category) {
  const frame = currentFrame();
  if (!canLabel || !frame || viewerNode.dataset.state !== "ready") return;
  pause();
  labelFrame(frame, laterality, category);
  const next = nextSampledIndex(state.index, 1) ?? nextUnlabelledIndex(state.index);
  if (next !== null && next !== state.index) showFrame(next);
}

// --- navigation ----------------------------------------------------------------------------------

function currentFrame() {
  return state.frames[state.index] ?? null;
}

function nextSampledIndex(from, direction) {
  const n = state.frames.length;
  for (let i = from + direction; i >= 0 && i < n; i += direction) {
    if (state.frames[i].is_sampled) return i;
  }
  return null;
}

/** The next sampled frame I have not labelled, after ``from`` and wrapping round. */
function nextUnlabelledIndex(from) {
  const n = state.frames.length;
  for (let step = 1; step <= n; step++) {
    const i = (from + step) % n;
    const frame = state.frames[i];
    if (frame.is_sampled && !isLabelled(frame)) return i;
  }
  return null;
}

function goTo(index) {
  if (!state.frames.length) return;
  pause();
  showFrame(clamp(index, 0, state.frames.length - 1));
}

function step(delta) {
  const n = state.frames.length;
  if (!n) return;
  pause();
  // Stepping wraps like the loop does.
  showFrame((((state.index + delta) % n) + n) % n);
}

function goToNextSampled(direction = 1) {
  const next = nextSampledIndex(state.index, direction);
  if (next !== null) goTo(next);
  else toast(`No sampled frame ${direction > 0 ? "after" : "before"} this one.`, "info", 2500);
}

function goToNextUnlabelled() {
  const next = nextUnlabelledIndex(state.index);
  if (next === null) toast("Every sampled frame of this loop has your label.", "info", 3000);
  else goTo(next);
}

function goToNextLoop() {
  if (state.nextLoop?.url) window.location.assign(state.nextLoop.url);
  else toast("No further loop waits for your labels.", "info", 3000);
}

// --- page rendering ------------------------------------------------------------------------------

const strip = $("#strip");
const stripItems = [];

/** Put frame ``index`` on screen; the player passes ``fromPlayer`` to keep its own clock. */
function showFrame(index, { fromPlayer = false } = {}) {
  const frame = state.frames[index];
  if (!frame) return;
  const previous = state.index;
  state.index = index;
  if (!fromPlayer) state.clock = state.offsets[index] + 1e-3;
  dwell.show(frame.uuid);
  draw();
  stripItems[previous]?.classList.remove("is-current");
  stripItems[index]?.classList.add("is-current");
  renderFrameInfo();
  scrollStripTo(index);
  drawScrubber();
  if (!fromPlayer) closeNote();
}

function scrollStripTo(index) {
  const item = stripItems[index];
  if (!item) return;
  const left = item.offsetLeft;
  const right = left + item.offsetWidth;
  if (left < strip.scrollLeft + 40 || right > strip.scrollLeft + strip.clientWidth - 40) {
    strip.scrollLeft = left - strip.clientWidth / 2 + item.offsetWidth / 2;
  }
}

function renderPlayState() {
  viewerNode.dataset.playing = String(state.playing);
  const button = $("#play-button");
  button.setAttribute("aria-label", state.playing ? "Pause" : "Play");
  button.classList.toggle("is-playing", state.playing);
}

function renderFrameInfo() {
  const frame = currentFrame();
  if (!frame) return;
  viewerNode.dataset.frameIndex = String(state.index);
  $("#ov-frame").textContent = String(frame.index);
  $("#ov-time").textContent = Math.round(Number(frame.time_offset_ms)).toString();
  $("#ov-sampled").hidden = !frame.is_sampled;
  $("#side-frame").textContent = String(frame.index);
  $("#side-sampled").hidden = !frame.is_sampled;
  renderLabelPanel();
  renderStageLabel();
}

function renderStageLabel() {
  if (!canLabel) return;
  const frame = currentFrame();
  const label = frame ? shownLabel(frame) : null;
  const node = $("#stage-label");
  node.className = "stage__label";
  if (label) {
    node.classList.add(`stage__label--${label.category}`);
    if (isSaving(frame)) node.classList.add("is-saving");
    node.textContent = classText(label.laterality, label.category);
  } else if (frame?.is_sampled && viewerNode.dataset.state === "ready" && !state.playing) {
    node.classList.add("stage__label--todo");
    node.textContent = "Not labelled";
  } else {
    node.textContent = "";
  }
}

function renderLabelPanel() {
  const frame = currentFrame();
  if (!frame) return;
  renderPrelabel(frame);
  if (!canLabel) return;
  const label = shownLabel(frame);
  const box = $("#my-label");
  box.className = "my-label";
  const value = $("#my-label-value");
  const meta = $("#my-label-meta");
  if (label) {
    box.classList.add(`my-label--${label.category}`);
    if (isSaving(frame)) box.classList.add("is-saving");
    value.textContent = classText(label.laterality, label.category);
    const parts = [];
    if (isSaving(frame)) parts.push("saving…");
    else if (frame.my_label?.version) parts.push(`version ${frame.my_label.version}`);
    if (frame.my_label?.seconds_spent) parts.push(`${frame.my_label.seconds_spent.toFixed(1)} s on frame`);
    meta.textContent = parts.join(" · ");
    if (label.note) meta.append(element("div", { class: "my-label__note", text: `“${label.note}”` }));
  } else {
    box.classList.add("my-label--none");
    value.textContent = "Not labelled";
    meta.textContent = frame.is_sampled ? "Sampled for labelling." : "Not sampled: a label is optional.";
    const draft = state.drafts.get(frame.uuid);
    if (draft) meta.append(element("div", { class: "my-label__note", text: `Note, saved with your label: “${draft}”` }));
  }
  $$(".class-btn").forEach((button) => {
    const active = label && button.dataset.laterality === label.laterality && button.dataset.category === label.category;
    button.setAttribute("aria-pressed", String(Boolean(active)));
  });
}

function renderPrelabel(frame) {
  const suggestion = state.mode === "assisted" ? readPrelabel(frame.prelabel) : null;
  $("#prelabel").hidden = !suggestion;
  if (suggestion) {
    const pct = suggestion.probability !== null ? ` · ${Math.round(suggestion.probability * 100)} %` : "";
    $("#prelabel-value").textContent = `${classText(suggestion.laterality, suggestion.category)}${pct}`;
    $("#prelabel-model").textContent = suggestion.model ? `by ${suggestion.model}` : "";
  }
}

function renderProgress() {
  if (!canLabel) return;
  const sampled = state.frames.filter((f) => f.is_sampled);
  const labelled = sampled.filter(isLabelled).length;
  const extra = state.frames.filter((f) => !f.is_sampled && isLabelled(f)).length;
  viewerNode.dataset.labelledCount = String(state.frames.filter((f) => f.my_label).length);
  const fraction = sampled.length ? labelled / sampled.length : 0;
  $("#progress-fill").style.width = `${(fraction * 100).toFixed(1)}%`;
  $("#progress-text").textContent = `${labelled} / ${sampled.length} sampled labelled`;
  let detail = `${labelled} of ${sampled.length} sampled frame${sampled.length === 1 ? "" : "s"} labelled`;
  if (extra) detail += ` · ${extra} other frame${extra === 1 ? "" : "s"}`;
  $("#progress-detail").textContent = detail;
  const done = sampled.length > 0 && labelled === sampled.length && !sending && labelQueue.length === 0;
  $("#done").hidden = !done;
  viewerNode.classList.toggle("is-done", done);
}

function renderFrameMarks(frame) {
  const item = stripItems[frame.index];
  if (!item) return;
  const label = shownLabel(frame);
  item.classList.toggle("is-labelled", Boolean(label));
  item.classList.toggle("is-disputed", Boolean(frame.disputed));
  item.classList.toggle("is-saving", isSaving(frame));
  const tag = item.querySelector(".strip__tag");
  tag.textContent = label ? `${label.laterality} ${label.category}` : "";
  tag.className = `strip__tag${label ? ` strip__tag--${label.category}` : ""}`;
  let title = `Frame ${frame.index} · ${Math.round(frame.time_offset_ms)} ms`;
  if (frame.is_sampled) title += " · sampled";
  if (label) title += ` · your label: ${classText(label.laterality, label.category)}`;
  if (frame.disputed) title += " · disputed";
  item.querySelector("button").title = title;
}

/** Bring the page in line with the state; ``changed`` names the one frame whose label changed
 * (the strip of a 2,000-frame loop is not rewritten for every label). */
function renderAll(changed = null) {
  if (changed) renderFrameMarks(changed);
  else for (const frame of state.frames) renderFrameMarks(frame);
  if (viewerNode.dataset.state !== "ready") return;
  renderLabelPanel();
  renderStageLabel();
  renderProgress();
  drawScrubber();
}

function buildStrip() {
  strip.replaceChildren();
  stripItems.length = 0;
  for (const frame of state.frames) {
    const button = element("button", { type: "button", class: "strip__btn", "aria-label": `Frame ${frame.index}` }, [
      element("img", { src: frame.image_url, alt: "", loading: "lazy", decoding: "async", width: "56", height: "56" }),
      element("span", { class: "strip__index", text: String(frame.index) }),
      element("span", { class: "strip__tag" }),
    ]);
    button.addEventListener("click", () => goTo(frame.index));
    const item = element("li", { class: `strip__item${frame.is_sampled ? " is-sampled" : ""}` }, [button]);
    stripItems.push(item);
    strip.append(item);
  }
}

// The scrubber: every frame as a cell of one bar, sampled ticks, my labels, disputed frames
// and the playhead; click or drag to seek.
const scrubber = $("#scrubber");
const scrubberContext = scrubber.getContext("2d");
const COLOURS = {
  better: "#7cc49a",
  bad: "#e6b85c",
  other: "#9aa1a9",
  disputed: "#ef8a80",
  sampled: "#7fb2d9",
  track: "#16181b",
  cell: "#323840",
  head: "#ffffff",
};

function drawScrubber() {
  const ratio = window.devicePixelRatio || 1;
  const width = scrubber.clientWidth;
  const height = scrubber.clientHeight;
  if (scrubber.width !== Math.round(width * ratio) || scrubber.height !== Math.round(height * ratio)) {
    scrubber.width = Math.round(width * ratio);
    scrubber.height = Math.round(height * ratio);
  }
  const g = scrubberContext;
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.fillStyle = COLOURS.track;
  g.fillRect(0, 0, width, height);
  const n = state.frames.length;
  if (!n) return;
  const cell = width / n;
  for (let i = 0; i < n; i++) {
    const frame = state.frames[i];
    const x = i * cell;
    const label = shownLabel(frame);
    if (label) {
      g.fillStyle = COLOURS[label.category];
      g.fillRect(x + 0.5, 5, Math.max(1.5, cell - 1), height - 10);
    } else if (frame.is_sampled) {
      g.fillStyle = COLOURS.cell;
      g.fillRect(x + 0.5, 5, Math.max(1.5, cell - 1), height - 10);
    }
    if (frame.is_sampled) {
      g.fillStyle = COLOURS.sampled;
      g.fillRect(x + Math.max(0, cell / 2 - 1), 0, Math.min(2, cell), 5);
    }
    if (frame.disputed) {
      g.fillStyle = COLOURS.disputed;
      g.fillRect(x + 0.5, height - 5, Math.max(1, cell - 1), 5);
    }
  }
  const head = (state.index + 0.5) * cell;
  g.fillStyle = COLOURS.head;
  g.fillRect(Math.round(head - 1), 0, 2, height);
}

function seekFromScrubber(event) {
  const rect = scrubber.getBoundingClientRect();
  const n = state.frames.length;
  if (!n) return;
  goTo(Math.floor(clamp((event.clientX - rect.left) / rect.width, 0, 0.9999) * n));
}

// --- note ------------------------------------------------------------------------------------------

function openNote() {
  const frame = currentFrame();
  if (!canLabel || !frame) return;
  pause();
  const form = $("#note-form");
  form.hidden = false;
  form.dataset.frame = frame.uuid;
  $("#note-frame").textContent = String(frame.index);
  const label = shownLabel(frame);
  $("#note-text").value = label?.note ?? state.drafts.get(frame.uuid) ?? "";
  $("#note-hint").textContent = label
    ? "Enter saves · Esc cancels"
    : "Saved with your label of this frame · Esc cancels";
  $("#note-text").focus();
}

function closeNote() {
  const form = $("#note-form");
  if (!form || form.hidden) return;
  form.hidden = true;
  $("#note-text").blur();
}

function saveNote() {
  const form = $("#note-form");
  const frame = state.byUuid.get(form.dataset.frame);
  const note = $("#note-text").value.trim();
  closeNote();
  if (!frame) return;
  const label = shownLabel(frame);
  if (label) {
    if ((label.note ?? "") !== note) labelFrame(frame, label.laterality, label.category, note);
  } else if (note) {
    state.drafts.set(frame.uuid, note);
    toast(`Note kept; it is saved with your label of frame ${frame.index}.`, "info", 3500);
  } else {
    state.drafts.delete(frame.uuid);
  }
  renderAll(frame);
}

// --- help ------------------------------------------------------------------------------------------

const labelKeys = config.classes.map((c) => [c.key, `Label ${classText(c.laterality, c.category)}`]);

const SHORTCUTS = [
  [
    "Labels",
    [
      ...labelKeys,
      ["Enter", "Accept the model's pre-label (assisted mode)"],
      ["M", "Note on this frame"],
      ["Z  or  Ctrl+Z", "Undo your last label"],
      ["Delete", "Withdraw your label of this frame"],
    ],
  ],
  [
    "Frames",
    [
      ["Space", "Play / pause"],
      ["←  →", "Previous / next frame"],
      ["Shift+←  Shift+→", "Ten frames back / forward"],
      ["Home  End", "First / last frame"],
      ["N  Shift+N", "Next / previous sampled frame"],
      ["U", "Next sampled frame you have not labelled"],
      ["G", "Next loop"],
    ],
  ],
  [
    "Playback and view",
    [
      ["[  ]", "Slower / faster (0.25× to 2×)"],
      ["L", "Loop / ping-pong"],
      ["W", "Next window/level preset"],
      ["I", "Invert"],
      ["R", "Reset zoom, pan and window/level"],
      ["?", "This help"],
      ["Esc", "Close help or note"],
    ],
  ],
];

// What an admin, who looks but does not label, is not offered.
const LABELLING_ROWS = new Set(["Labels", "U"]);

function buildHelp() {
  const body = $("#shortcuts-body");
  for (const [title, rows] of SHORTCUTS) {
    if (!canLabel && LABELLING_ROWS.has(title)) continue;
    const list = element("dl", { class: "keys" });
    for (const [keys, what] of rows) {
      if (!canLabel && LABELLING_ROWS.has(keys)) continue;
      const dt = element("dt");
      for (const key of keys.split(/\s{2,}/)) {
        if (key === "or") dt.append(" or ");
        else dt.append(element("kbd", { text: key }));
      }
      list.append(dt, element("dd", { text: what }));
    }
    body.append(element("section", {}, [element("h3", { text: title }), list]));
  }
}

function toggleHelp() {
  const dialog = $("#shortcuts");
  if (dialog.open) dialog.close();
  else {
    pause();
    dialog.showModal();
  }
}

// --- keyboard and mouse --------------------------------------------------------------------------------

// The same label key again this soon is a bounce or a double press, not a reading of the frame
// that auto-advance has just put on screen: it is ignored.
const DOUBLE_PRESS_MS = 250;
let lastLabelKey = { key: null, at: 0 };

const LABELLING_KEYS = new Set(["u", "z", "m", "Enter", "Delete", "Backspace"]);
const classByKey = new Map(config.classes.map((c) => [c.key, c]));

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function onKeyDown(event) {
  if ($("#shortcuts").open) {
    if (event.key === "?") {
      event.preventDefault();
      toggleHelp();
    }
    return; // Esc closes the dialog natively.
  }
  if (isTyping(event.target)) {
    if (event.target.id === "note-text") {
      if (event.key === "Escape") {
        event.preventDefault();
        closeNote();
      } else if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        saveNote();
      }
    }
    return;
  }
  const key = event.key;
  const ctrl = event.ctrlKey || event.metaKey;
  if (ctrl && key.toLowerCase() === "z" && !event.shiftKey) {
    if (!canLabel) return;
    event.preventDefault();
    undo();
    return;
  }
  if (ctrl || event.altKey) return; // leave the browser's own shortcuts alone
  const cls = canLabel ? classByKey.get(key) : null;
  if (cls) {
    event.preventDefault();
    const now = performance.now();
    const bounce = key === lastLabelKey.key && now - lastLabelKey.at < DOUBLE_PRESS_MS;
    lastLabelKey = { key, at: now };
    if (!event.repeat && !bounce) labelAndAdvance(cls.laterality, cls.category);
    return;
  }
  // Letters by their lower-case name; Shift changes only N (previous sampled frame).
  const name = /^[a-z]$/i.test(key) ? key.toLowerCase() : key;
  const shift = event.shiftKey;
  const actions = {
    " ": () => togglePlay(),
    ArrowLeft: () => step(shift ? -10 : -1),
    ArrowRight: () => step(shift ? 10 : 1),
    Home: () => goTo(0),
    End: () => goTo(state.frames.length - 1),
    n: () => goToNextSampled(shift ? -1 : 1),
    u: () => goToNextUnlabelled(),
    g: () => goToNextLoop(),
    z: () => undo(),
    m: () => openNote(),
    i: () => toggleInvert(),
    r: () => resetView(),
    w: () => cyclePreset(),
    l: () => setPlayMode(state.playMode === "loop" ? "pingpong" : "loop"),
    "[": () => stepSpeed(-1),
    "]": () => stepSpeed(1),
    "?": () => toggleHelp(),
    Enter: () => acceptPrelabel(),
    Delete: () => currentFrame() && withdraw(currentFrame()),
    Backspace: () => currentFrame() && withdraw(currentFrame()),
    Escape: () => closeNote(),
  };
  const action = actions[name];
  if (!action || (!canLabel && LABELLING_KEYS.has(name))) return;
  // Everything but help waits for the frames.
  if (viewerNode.dataset.state !== "ready" && name !== "?") return;
  event.preventDefault();
  const repeats = ["ArrowLeft", "ArrowRight", "[", "]"].includes(name);
  if (!event.repeat || repeats) action();
}

function bindControls() {
  document.addEventListener("keydown", onKeyDown);
  // Space on a focused button would press it as well as toggle playback.
  document.addEventListener("keyup", (event) => {
    if (event.key === " " && !isTyping(event.target)) event.preventDefault();
  });
  document.addEventListener("visibilitychange", () => {
    dwell.visibility(document.visibilityState === "visible");
    if (document.visibilityState !== "visible") pause();
  });

  const actions = {
    play: togglePlay,
    "prev-frame": () => step(-1),
    "next-frame": () => step(1),
    "next-sampled": () => goToNextSampled(1),
    "next-unlabelled": goToNextUnlabelled,
    "mode-loop": () => setPlayMode("loop"),
    "mode-pingpong": () => setPlayMode("pingpong"),
    invert: toggleInvert,
    "reset-view": resetView,
    help: toggleHelp,
    "accept-prelabel": acceptPrelabel,
    note: openNote,
    undo,
    withdraw: () => currentFrame() && withdraw(currentFrame()),
  };
  for (const button of $$("[data-action]")) {
    // Buttons never keep the focus: the keyboard stays with the viewer.
    button.addEventListener("mousedown", (event) => event.preventDefault());
    button.addEventListener("click", () => {
      if (viewerNode.dataset.state !== "ready" && !["help"].includes(button.dataset.action)) return;
      actions[button.dataset.action]?.();
    });
  }
  for (const button of $$(".seg__btn[data-preset]")) {
    button.addEventListener("mousedown", (event) => event.preventDefault());
    button.addEventListener("click", () => setPreset(button.dataset.preset));
  }
  for (const button of $$(".class-btn")) {
    button.addEventListener("mousedown", (event) => event.preventDefault());
    button.addEventListener("click", () => labelAndAdvance(button.dataset.laterality, button.dataset.category));
  }
  $("#speed").addEventListener("change", (event) => {
    setSpeed(Number(event.target.value));
    event.target.blur();
  });
  $("#note-form")?.addEventListener("submit", (event) => {
    event.preventDefault();
    saveNote();
  });

  // Stage: drag for window/level, Shift-drag or middle-drag to pan, wheel to zoom.
  let drag = null;
  stage.addEventListener("contextmenu", (event) => event.preventDefault());
  stage.addEventListener("pointerdown", (event) => {
    if (viewerNode.dataset.state !== "ready") return;
    const pan = event.shiftKey || event.button === 1;
    drag = { pan, x: event.clientX, y: event.clientY, pointer: event.pointerId };
    stage.setPointerCapture(event.pointerId);
    stage.classList.add(pan ? "is-panning" : "is-windowing");
    event.preventDefault();
  });
  stage.addEventListener("pointermove", (event) => {
    if (!drag || event.pointerId !== drag.pointer) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    drag.x = event.clientX;
    drag.y = event.clientY;
    if (drag.pan) {
      state.view.panX += dx;
      state.view.panY += dy;
      requestDraw();
    } else {
      // Right widens the window (less contrast), down raises the level (darker).
      state.view.width = clamp(state.view.width + dx * 0.004, 0.05, 2);
      state.view.level = clamp(state.view.level + dy * 0.002, 0.02, 0.98);
      state.view.preset = null;
      applyWindowLevel();
    }
  });
  const endDrag = (event) => {
    if (!drag || event.pointerId !== drag.pointer) return;
    drag = null;
    stage.classList.remove("is-panning", "is-windowing");
  };
  stage.addEventListener("pointerup", endDrag);
  stage.addEventListener("pointercancel", endDrag);
  stage.addEventListener("dblclick", resetView);
  stage.addEventListener(
    "wheel",
    (event) => {
      if (viewerNode.dataset.state !== "ready") return;
      event.preventDefault();
      zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX, event.clientY);
    },
    { passive: false },
  );

  let seeking = false;
  scrubber.addEventListener("pointerdown", (event) => {
    seeking = true;
    scrubber.setPointerCapture(event.pointerId);
    seekFromScrubber(event);
  });
  scrubber.addEventListener("pointermove", (event) => seeking && seekFromScrubber(event));
  scrubber.addEventListener("pointerup", () => {
    seeking = false;
  });

  new ResizeObserver(() => {
    resizeCanvas();
    drawScrubber();
  }).observe(stage);
  window.addEventListener("pagehide", (event) => {
    // Free the decoded frames at once, unless the page is kept for the Back button.
    if (!event.persisted) for (const bitmap of state.bitmaps) bitmap?.close?.();
  });
}

// --- start -------------------------------------------------------------------------------------------

function initialIndex() {
  const requested = Number.parseInt(new URLSearchParams(window.location.search).get("frame") ?? "", 10);
  if (Number.isInteger(requested) && state.frames[requested]) return requested;
  const firstTodo = state.frames.findIndex((f) => f.is_sampled && !f.my_label);
  if (firstTodo >= 0) return firstTodo;
  const firstSampled = state.frames.findIndex((f) => f.is_sampled);
  return firstSampled >= 0 ? firstSampled : 0;
}

async function start() {
  buildHelp();
  bindControls();
  applyWindowLevel();
  setSpeed(1);
  setPlayMode("loop");
  resizeCanvas();

  const result = await api("GET", config.urls.workspace);
  if (result.status !== 200 || !result.data?.frames) {
    viewerNode.dataset.state = "error";
    $("#loading").classList.add("is-error");
    $(".loading__text").textContent = errorMessage(result, "The loop could not be loaded.");
    return;
  }
  const workspace = result.data;
  state.loop = workspace.loop;
  state.mode = workspace.mode ?? "blinded";
  viewerNode.dataset.mode = state.mode;
  state.frames = workspace.frames;
  state.byUuid = new Map(state.frames.map((frame) => [frame.uuid, frame]));
  state.nextLoop = workspace.next_loop ?? null;
  for (const link of $$("#next-loop-link, #done-next")) {
    if (state.nextLoop?.url) {
      link.href = state.nextLoop.url;
      link.hidden = false;
    } else {
      link.hidden = true;
    }
  }
  ({ offsets: state.offsets, duration: state.duration } = frameTimes(state.frames, Number(workspace.loop.frame_time_ms)));
  buildStrip();
  renderAll();

  const count = $("#loading-count");
  const fill = $("#loading-fill");
  const { bitmaps, failed } = await loadAllFrames(state.frames, (done, total) => {
    count.textContent = String(done);
    fill.style.width = `${((done / total) * 100).toFixed(1)}%`;
    viewerNode.dataset.loaded = String(done);
  });
  state.bitmaps = bitmaps;
  if (failed) {
    toast(`${failed} frame${failed === 1 ? "" : "s"} could not be loaded; reload the page to try again.`, "error", 10000);
  }
  $("#loading").hidden = true;
  viewerNode.dataset.state = "ready";
  showFrame(initialIndex());
  renderAll();
  stage.focus({ preventScroll: true });
  prefetchNextLoop();
}

start();
