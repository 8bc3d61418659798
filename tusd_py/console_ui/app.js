// The tusd-py web console: a client of the public API like any other.
// Tokens live in sessionStorage (a reload keeps the session, closing the tab ends it);
// every request gets a fresh bearer header, uploads included (Uppy's Tus plugin fixes
// `headers` when an upload starts, so we set it in onBeforeRequest instead).
import { Dashboard, Tus, Uppy } from "/console/vendor/uppy.min.mjs";

const SESSION_KEY = "tusd-py.session";
const EVENTS = ["task.queued", "task.progress", "task.retrying", "task.completed", "task.failed", "task.cancelled"];
const FINAL = new Set(["completed", "failed", "cancelled"]);
const CANCELLABLE = new Set(["queued", "processing", "retrying"]);
const $ = (selector) => document.querySelector(selector);

let session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
let refreshing = null; // one refresh at a time: a refresh token works once
let refreshTimer = null;
let source = null;
let reconnectTimer = null;
let lastEventId = "";
let uppy = null;
const tasks = new Map();

function say(text, ok = false) {
  const message = $("#message");
  message.textContent = text;
  message.className = ok ? "ok" : "";
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error?.message || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function keep(pair, username) {
  session = {
    username,
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    expires_at: Date.now() + pair.expires_in * 1000,
    lifetime: pair.expires_in * 1000,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  scheduleRefresh();
}

// Refresh a fifth of the lifetime (at most a minute) before the access token expires.
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!session) return;
  const margin = Math.min(60_000, session.lifetime / 5);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), Math.max(0, session.expires_at - margin - Date.now()));
}

function refresh() {
  refreshing ??= (async () => {
    const response = await fetch("/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: session.refresh_token }),
    });
    if (!response.ok) {
      signedOut("Your session ended; please log in again.");
      throw new Error("refresh failed");
    }
    keep(await response.json(), session.username);
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function accessToken() {
  if (!session) throw new Error("not logged in");
  if (Date.now() > session.expires_at - Math.min(60_000, session.lifetime / 5)) await refresh();
  return session.access_token;
}

async function api(path, options = {}) {
  const call = async () =>
    fetch(path, { ...options, headers: { ...options.headers, Authorization: `Bearer ${await accessToken()}` } });
  let response = await call();
  if (response.status === 401 && session) {
    await refresh();
    response = await call();
  }
  return response;
}

async function authenticate(kind) {
  const username = $("#username").value.trim();
  const password = $("#password").value;
  const credentials = JSON.stringify({ username, password });
  const json = { "Content-Type": "application/json" };
  if (kind === "register") {
    const created = await fetch("/auth/register", { method: "POST", headers: json, body: credentials });
    if (created.status !== 201) return say(`Registration failed: ${await errorText(created)}`);
  }
  const login = await fetch("/auth/login", { method: "POST", headers: json, body: credentials });
  if (!login.ok) return say(`Login failed: ${await errorText(login)}`);
  keep(await login.json(), username);
  $("#password").value = "";
  say(kind === "register" ? `Welcome, ${username}.` : "", true);
  await signedIn();
}

async function logout() {
  const token = session?.access_token;
  if (token) await fetch("/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
  signedOut("Logged out.", true);
}

function signedOut(text, ok = false) {
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  clearTimeout(refreshTimer);
  clearTimeout(reconnectTimer);
  source?.close();
  source = null;
  lastEventId = "";
  uppy?.cancelAll();
  uppy?.destroy();
  uppy = null;
  tasks.clear();
  renderTasks();
  $("#main").hidden = true;
  $("#logout").hidden = true;
  $("#whoami").hidden = true;
  $("#auth").hidden = false;
  say(text, ok);
}

async function signedIn() {
  $("#auth").hidden = true;
  $("#main").hidden = false;
  $("#logout").hidden = false;
  $("#whoami").hidden = false;
  $("#whoami").textContent = session.username;
  scheduleRefresh();
  await loadOperations();
  startUppy();
  await connectEvents();
}

async function loadOperations() {
  const response = await api("/operations");
  const { operations } = await response.json();
  $("#operation").replaceChildren(
    ...operations.map(({ name, description }) => Object.assign(document.createElement("option"), { value: name, textContent: name, title: description })),
  );
}

function startUppy() {
  if (uppy) return;
  uppy = new Uppy({ id: "tusd-py", autoProceed: false })
    .use(Dashboard, { inline: true, target: "#dashboard", height: 300, proudlyDisplayPoweredByUppy: false })
    .use(Tus, {
      endpoint: "/files/",
      chunkSize: 8 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000],
      removeFingerprintOnSuccess: true,
      async onBeforeRequest(request) {
        request.setHeader("Authorization", `Bearer ${await accessToken()}`);
      },
    });
  // The operation is chosen per file: the one selected when the file is added.
  uppy.on("file-added", (file) => uppy.setFileMeta(file.id, { operation: $("#operation").value, filename: file.name }));
  uppy.on("upload-error", (file, error) => say(`Upload of ${file?.name} failed: ${error?.message || error}`));
}

// The event stream: a ticket (EventSource cannot send a header), and when the stream
// drops, a new ticket and a reconnect that replays from the last event id.
async function connectEvents(delay = 1000) {
  if (!session) return;
  source?.close();
  let ticket;
  try {
    const response = await api("/auth/ticket", { method: "POST" });
    if (!response.ok) throw new Error(await errorText(response));
    ({ ticket } = await response.json());
  } catch (error) {
    if (!session) return;
    $("#stream-state").textContent = `offline (${error.message}); retrying`;
    reconnectTimer = setTimeout(() => connectEvents(Math.min(delay * 2, 30_000)), delay);
    return;
  }
  const url = new URL("/events", location.href);
  url.searchParams.set("ticket", ticket);
  if (lastEventId) url.searchParams.set("last_event_id", lastEventId);
  const stream = new EventSource(url);
  source = stream;
  stream.addEventListener("open", () => {
    $("#stream-state").textContent = "live";
    loadTasks(); // after the stream is open, so no change falls between the two
  });
  for (const name of EVENTS) {
    stream.addEventListener(name, (event) => {
      lastEventId = event.lastEventId || lastEventId;
      upsert(JSON.parse(event.data), true);
    });
  }
  stream.addEventListener("error", () => {
    if (source !== stream) return;
    stream.close(); // its own retry would reuse a spent ticket
    $("#stream-state").textContent = "reconnecting…";
    reconnectTimer = setTimeout(() => connectEvents(Math.min(delay * 2, 30_000)), delay);
  });
}

async function loadTasks() {
  const response = await api("/tasks?limit=100");
  if (!response.ok) return say(`Could not list tasks: ${await errorText(response)}`);
  for (const task of (await response.json()).tasks) upsert(task, false);
}

// Events come in order and always apply; a listed snapshot may be older than an event
// that arrived meanwhile, so it never replaces a finished task or a newer try.
function upsert(task, fromEvent) {
  const known = tasks.get(task.id);
  if (known && FINAL.has(known.status) && !FINAL.has(task.status)) return;
  if (known && !fromEvent && (known.attempts > task.attempts || FINAL.has(known.status))) return;
  tasks.set(task.id, task);
  renderTasks();
}

function renderTasks() {
  const rows = [...tasks.values()].sort((a, b) => b.created_at.localeCompare(a.created_at)).map(taskRow);
  $("#tasks tbody").replaceChildren(...rows);
  $("#no-tasks").hidden = rows.length > 0;
}

function cell(text, className = "") {
  return Object.assign(document.createElement("td"), { textContent: text, className });
}

function taskRow(task) {
  const row = document.createElement("tr");
  row.dataset.id = task.id;
  row.dataset.status = task.status;
  const bar = Object.assign(document.createElement("progress"), { max: 1, value: task.progress });
  const progress = document.createElement("td");
  progress.append(bar, ` ${Math.round(task.progress * 100)}%`);
  const actions = document.createElement("td");
  if (task.status === "completed") actions.append(button("Download", "download", () => download(task)));
  if (CANCELLABLE.has(task.status)) actions.append(button("Cancel", "cancel", () => cancel(task)));
  row.append(
    cell(task.filename, "filename"),
    cell(task.operation),
    cell(task.status, "status"),
    progress,
    cell(`${task.attempts}/${task.max_attempts}`, "attempts"),
    cell(task.error || "", "error"),
    actions,
  );
  return row;
}

function button(text, className, onClick) {
  const element = Object.assign(document.createElement("button"), { type: "button", textContent: text, className });
  element.addEventListener("click", onClick);
  return element;
}

// A result is fetched with the bearer header into a Blob: no token ever sits in a URL.
async function download(task) {
  const response = await api(`/tasks/${encodeURIComponent(task.id)}/result`);
  if (!response.ok) return say(`Download failed: ${await errorText(response)}`);
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: `${task.operation}-${task.filename}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function cancel(task) {
  const response = await api(`/tasks/${encodeURIComponent(task.id)}`, { method: "DELETE" });
  if (!response.ok) say(`Cancel failed: ${await errorText(response)}`);
}

$("#auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  authenticate("login");
});
$("#register").addEventListener("click", () => {
  if ($("#auth-form").reportValidity()) authenticate("register");
});
$("#logout").addEventListener("click", logout);

if (session) signedIn().catch((error) => say(error.message));
else $("#auth").hidden = false;
