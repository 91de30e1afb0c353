// Live job progress for the jobs list and a job's page (templates/inference/job_*.html).
//
// One ES module, no framework and no build step. It opens the job websocket (/ws/jobs/ or
// /ws/jobs/<uuid>/) and applies each state the server sends (inference.jobs.job_state) to the
// elements marked with data-job-* attributes. Where the socket cannot connect, or drops, it
// polls the JSON state endpoint every two seconds instead: the page stays current either way.

const config = JSON.parse(document.getElementById("jobs-config").textContent);
const POLL_MS = 2000;
// Close codes of inference/consumers.py: the server refused, so polling would be refused too.
const CLOSE_FORBIDDEN = 4403;
const CLOSE_NOT_FOUND = 4404;
const singleJob = Boolean(config.job);

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

// --- applying a state --------------------------------------------------------------------------

function setHidden(node, hidden) {
  if (node) node.hidden = hidden;
}

function formatMetric(value) {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
  if (value === null || value === undefined) return "—";
  return String(value);
}

function renderMetrics(container, metrics) {
  const entries = Object.entries(metrics ?? {});
  const scalars = entries.filter(([, value]) => value === null || typeof value !== "object");
  const structured = entries.filter(([, value]) => value !== null && typeof value === "object");
  if (!entries.length) {
    const empty = document.createElement("p");
    empty.className = "muted";
    empty.textContent = "None yet.";
    container.replaceChildren(empty);
    return;
  }
  const table = document.createElement("table");
  table.className = "data-table";
  const body = table.createTBody();
  for (const [name, value] of [...scalars, ...structured]) {
    const row = body.insertRow();
    const head = document.createElement("th");
    head.scope = "row";
    head.textContent = name;
    const cell = row.insertCell();
    const isStructured = value !== null && typeof value === "object";
    cell.className = isStructured ? "filename" : "num";
    cell.textContent = isStructured ? JSON.stringify(value) : formatMetric(value);
    row.prepend(head);
  }
  container.replaceChildren(table);
}

function renderModels(list, versions) {
  list.replaceChildren(
    ...versions.map((version) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = version.url;
      link.textContent = version.label;
      item.append(link);
      return item;
    }),
  );
}

/** Write one job's state into the elements under root (the page, or a row of the list). */
function applyState(root, state) {
  for (const node of $$("[data-job-field]", root)) {
    const name = node.dataset.jobField;
    if (!(name in state)) continue;
    const text = state[name] === null || state[name] === undefined ? "" : String(state[name]);
    if (name === "log_tail") {
      const atBottom = node.scrollHeight - node.scrollTop - node.clientHeight < 8;
      if (node.textContent !== text) node.textContent = text;
      if (atBottom) node.scrollTop = node.scrollHeight;
    } else if (node.textContent !== text) {
      node.textContent = text;
    }
  }
  for (const bar of $$("[data-job-progress]", root)) bar.value = state.percent;
  for (const badge of $$("[data-job-status]", root)) badge.dataset.jobStatus = state.status;
  setHidden($("[data-job-error]", root), !state.error);
  setHidden($("[data-job-cancel]", root), !(state.is_active && !state.cancel_requested));
  setHidden($("[data-job-cancel-requested]", root), !(state.is_active && state.cancel_requested));
  if ("can_resume" in state) setHidden($("[data-job-resume]", root), !state.can_resume);
  const metrics = $("[data-job-metrics]", root);
  if (metrics && "metrics" in state) renderMetrics(metrics, state.metrics);
  const models = $("[data-job-models]", root);
  if (models && Array.isArray(state.model_versions)) {
    renderModels(models, state.model_versions);
    setHidden($("[data-job-models-panel]", root), state.model_versions.length === 0);
  }
}

// The newest state applied per job: a push and a poll may cross, and an older state must not
// overwrite a newer one.
const applied = new Map();

function receive(state) {
  const previous = applied.get(state.uuid);
  if (previous && previous >= Date.parse(state.updated_at)) return;
  applied.set(state.uuid, Date.parse(state.updated_at));
  if (singleJob) {
    if (state.uuid === config.job) applyState(document, state);
    return;
  }
  const row = $(`tr[data-job="${CSS.escape(state.uuid)}"]`);
  if (row) applyState(row, state);
  else if (belongsOnThisPage(state)) setHidden($("[data-jobs-new]"), false);
}

/** A job the list does not show yet that it would show on reload: new, and matching the filters. */
function belongsOnThisPage(state) {
  const params = new URLSearchParams(location.search);
  if ((params.get("page") ?? "1") !== "1") return false;
  if (params.get("kind") && params.get("kind") !== state.kind) return false;
  if (params.get("status") && params.get("status") !== state.status) return false;
  return state.is_active;
}

// --- connection: websocket first, polling as the fallback -------------------------------------

function showConnection(text, { problem = false } = {}) {
  const node = $(singleJob ? "[data-job-connection]" : "[data-jobs-connection]");
  if (!node) return;
  node.textContent = text;
  // On a job's page the box is for problems only; the list shows how it stays current.
  if (singleJob) node.hidden = !problem;
}

let polling = false;

async function pollOnce() {
  const url = singleJob ? config.state_url : config.state_url + location.search;
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  } catch {
    showConnection("The server cannot be reached; retrying.", { problem: true });
    return true;
  }
  const isJson = (response.headers.get("Content-Type") ?? "").includes("application/json");
  if (!response.ok || !isJson) {
    // A redirect to the login page, or a refusal: polling again would not help.
    showConnection("Live updates stopped: your session ended or you may not see this job. Reload the page.", {
      problem: true,
    });
    return false;
  }
  const data = await response.json();
  showConnection("Updating every 2 s.");
  if (singleJob) {
    receive(data);
    return !data.is_finished;
  }
  for (const state of data.jobs) receive(state);
  return true;
}

async function startPolling() {
  if (polling) return;
  polling = true;
  while (await pollOnce()) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function connect() {
  if (!("WebSocket" in window)) {
    startPolling();
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let socket;
  try {
    socket = new WebSocket(`${scheme}://${location.host}${config.socket_path}`);
  } catch {
    startPolling();
    return;
  }
  socket.addEventListener("open", () => showConnection("Connected."));
  socket.addEventListener("message", (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.type === "job") receive(message.job);
    else if (message.type === "jobs") message.jobs.forEach(receive);
  });
  socket.addEventListener("close", (event) => {
    if (event.code === CLOSE_FORBIDDEN || event.code === CLOSE_NOT_FOUND) {
      showConnection("Live updates refused: your session ended or you may not see this job. Reload the page.", {
        problem: true,
      });
      return;
    }
    // Refused before opening (a proxy without websockets) or dropped later: poll the row.
    startPolling();
  });
}

connect();
