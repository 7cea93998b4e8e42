// The functions-host dashboard: plain ES2022, no dependencies, no build step.
//
// What it reads (all same-origin, JSON):
//   GET  /healthz                               server health and node id (no key needed)
//   GET  /api/functions                         the functions this key sees
//   GET  /api/functions/{name}                  one function's details and source
//   GET  /api/functions/{name}/logs?after&wait  its log lines, long-polled for a live tail
//   GET  /api/metrics                           counters and the last hour's history
//   POST /api/functions/{name}/calls            queues an asynchronous call
//   GET  /api/calls/{id}?wait                   a queued call's result
//   ANY  /fn/{name}/{path}                      invokes the function
//
// When the server has API keys, /api answers 401 without one: the page then asks for a key,
// keeps it in this page's memory only (never in storage: functions share this origin, and a
// function's page could read what the dashboard stored) and sends it as `Authorization: Bearer
// KEY` with every /api request, and with invocations of functions that are not public.
//
// Everything the server returns (function names, log lines, response bodies) is untrusted: it
// reaches the DOM through textContent and attributes only, never as markup.

// ---- Settings ---------------------------------------------------------------------------------

/** How often the function list and health are refreshed. */
const FUNCTIONS_EVERY_MS = 10_000;
/** How often /api/metrics is read (the queue numbers; the charts are redrawn with it). */
const METRICS_EVERY_MS = 3_000;
/** How long one log long poll waits on the server for a new line. */
const LOG_WAIT_SECONDS = 20;
/** Largest page of log lines the server answers (MAX_LOG_PAGE in http/src/api.rs). */
const LOG_PAGE = 10_000;
/** Most log lines kept in the DOM; older ones are dropped from the top. */
const MAX_LOG_LINES = 1000;
/** Longest log message shown in full. */
const MAX_LOG_MESSAGE = 4000;
/** Longest response body shown in full. */
const MAX_BODY_SHOWN = 1 << 20;
/** The charts' window. */
const HOUR_MS = 3_600_000;
/** Default body of the invoke form. */
const DEFAULT_BODY = '{\n  "name": "World"\n}';

// ---- DOM helpers ------------------------------------------------------------------------------

/** The element with this id (the page shell has them all). */
function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

/**
 * Sets attributes and children of `node`: `text` sets textContent, `on*` functions become event
 * listeners, null/false values are skipped; string children become text nodes.
 */
function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element. */
function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element. */
function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function show(node, visible = true) {
  node.hidden = !visible;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- Formatting -------------------------------------------------------------------------------

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** HH:MM:SS.mmm, local time. */
function clockMs(time) {
  const d = new Date(time);
  if (Number.isNaN(d.getTime())) return String(time);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** HH:MM:SS, local time. */
function clock(time) {
  const d = new Date(time);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** HH:MM, local time. */
function clockShort(time) {
  const d = new Date(time);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** YYYY-MM-DD HH:MM, local time. */
function dateTime(time) {
  const d = new Date(time);
  if (Number.isNaN(d.getTime())) return String(time ?? "");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clockShort(d)}`;
}

/** "5 min ago", "3 h ago", "2 d ago". */
function ago(time) {
  const seconds = Math.round((Date.now() - new Date(time).getTime()) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** A count, with thousands separators ("-" when it is not a number). */
function count(value) {
  const n = Number(value);
  return Number.isFinite(n) ? n.toLocaleString("en-US") : "\u2013";
}

/** A short count for axis labels: 950, 1.2k, 3M. */
function shortCount(n) {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  return String(+n.toFixed(2));
}

/** Milliseconds: 0.42 ms, 12.3 ms, 1.5 s. */
function millis(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return "\u2013";
  ms = Number(ms);
  if (ms >= 1000) return `${+(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${+ms.toFixed(1)} ms`;
  return `${+ms.toFixed(2)} ms`;
}

/** Whether `value` is a finite number (not null, which Number() would make 0). */
function isValue(value) {
  return typeof value === "number" && Number.isFinite(value);
}

/** A number of this object's field, 0 when absent or not a number. */
function num(object, field) {
  const n = Number(object?.[field]);
  return Number.isFinite(n) ? n : 0;
}

// ---- API client -------------------------------------------------------------------------------

/** The server wants a (different) API key: 401. */
class AuthError extends Error {}

/** Any other answer that is not a success, with the server's error code and message. */
class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const state = {
  /** The API key in use ("" for none). */
  key: "",
  /** Whether the server asked for a key (a 401 was seen). */
  keyRequired: false,
  /** The last list of functions, and its JSON (to skip re-rendering an unchanged list). */
  functions: [],
  functionsJson: "",
  /** The last /api/metrics answer, or the error reading it. */
  metrics: null,
  metricsError: null,
  /** The selected function's name, or null. */
  selected: null,
  /** The pollers running while the app is shown. */
  pollers: [],
};

/** Headers that carry the key, if there is one. */
function authHeaders() {
  return state.key ? { authorization: `Bearer ${state.key}` } : {};
}

/** The server's error message in a response, if it answered the JSON error shape. */
async function errorOf(response) {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body?.error) return { code: body.error.code ?? "", message: body.error.message ?? text };
  } catch {
    // Not JSON: the text is the message.
  }
  return { code: "", message: text.slice(0, 500) || `${response.status} ${response.statusText}` };
}

/** A fetch to the server that turns network failures and bad header values into errors. */
async function send(path, init = {}) {
  try {
    return await fetch(path, { cache: "no-store", ...init });
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new HttpError(0, "network", `could not reach the server (${err?.message ?? err})`);
  }
}

/** A JSON request to /api with the key; throws AuthError on 401, HttpError on other failures. */
async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const response = await send(path, {
    method,
    body,
    signal,
    headers: { ...authHeaders(), ...headers },
  });
  if (response.status === 401) {
    const { message } = await errorOf(response);
    throw new AuthError(message);
  }
  if (!response.ok) {
    const { code, message } = await errorOf(response);
    throw new HttpError(response.status, code, message);
  }
  return response.json();
}

const fnPath = (name) => encodeURIComponent(name);

// ---- Pollers ----------------------------------------------------------------------------------

/** Runs `task` now and then every `ms` after each run ends; `kick()` runs it again at once. */
class Poller {
  constructor(ms, task) {
    this.ms = ms;
    this.task = task;
    this.timer = 0;
    this.running = false;
    this.again = false;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.kick();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  kick() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    Promise.resolve()
      .then(this.task)
      .catch(backgroundError)
      .finally(() => {
        this.running = false;
        if (this.stopped) return;
        if (this.again) {
          this.again = false;
          this.kick();
        } else {
          this.timer = setTimeout(() => this.kick(), this.ms);
        }
      });
  }
}

const functionsPoller = new Poller(FUNCTIONS_EVERY_MS, refreshFunctions);
const healthPoller = new Poller(FUNCTIONS_EVERY_MS, refreshHealth);
const metricsPoller = new Poller(METRICS_EVERY_MS, refreshMetrics);

/** A failure of a background refresh: a 401 asks for a key, others show in the banner. */
function backgroundError(err) {
  if (err instanceof AuthError) {
    requireKey(`The server no longer accepts this key: ${err.message}`);
    return;
  }
  if (err?.name === "AbortError") return;
  showBanner(`Refresh failed: ${err?.message ?? err}`);
}

function showBanner(message) {
  const banner = $("global-error");
  banner.textContent = message;
  show(banner, Boolean(message));
}

function touched() {
  $("updated-at").textContent = `updated ${clock(Date.now())}`;
}

// ---- Authentication ---------------------------------------------------------------------------

/** Connects: reads the function list, and either shows the app or asks for a key. */
async function connect() {
  try {
    const list = await api("/api/functions");
    showBanner("");
    startApp(list);
  } catch (err) {
    if (err instanceof AuthError) {
      state.keyRequired = true;
      const refused = state.key !== "";
      forgetStoredKey();
      showKeyForm(refused ? `The server refused this key: ${err.message}` : "");
    } else {
      // The server is unreachable or broken: say so and try again shortly.
      $("key-submit").disabled = false;
      showBanner(`Cannot load the functions: ${err.message}. Retrying in 5 s\u2026`);
      setTimeout(connect, 5000);
    }
  }
}

function forgetStoredKey() {
  state.key = "";
}

/** Stops everything and asks for a key, with `message` as the error (if any). */
function requireKey(message) {
  stopApp();
  forgetStoredKey();
  state.keyRequired = true;
  showKeyForm(message);
}

function showKeyForm(message) {
  show($("app"), false);
  show($("auth-status"), false);
  show($("key-section"), true);
  const error = $("key-error");
  error.textContent = message;
  show(error, Boolean(message));
  const input = $("key-input");
  input.value = "";
  $("key-submit").disabled = false;
  input.focus();
}

async function submitKey(event) {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  // Header values must be ISO-8859-1 printable: refuse anything else here, with a message.
  if (!/^[\x21-\x7e]+$/.test(key)) {
    showKeyForm("An API key is printable ASCII without spaces.");
    return;
  }
  state.key = key;
  $("key-submit").disabled = true;
  await connect();
}

function forgetKey() {
  forgetStoredKey();
  // A fresh start: nothing of this key's view stays on the page.
  location.reload();
}

// ---- The app ----------------------------------------------------------------------------------

function startApp(list) {
  show($("key-section"), false);
  show($("app"), true);
  show($("auth-status"), state.key !== "");
  renderFunctions(list.functions ?? []);
  for (const poller of [functionsPoller, healthPoller, metricsPoller]) poller.start();
  selectFromHash();
}

function stopApp() {
  for (const poller of [functionsPoller, healthPoller, metricsPoller]) poller.stop();
  closePanel();
  show($("app"), false);
}

// ---- Health (header) ----------------------------------------------------------------------------

async function refreshHealth() {
  const health = $("health");
  const text = $("health-text");
  try {
    const response = await send("/healthz");
    const body = await response.json().catch(() => ({}));
    if (response.ok && body.status === "ok") {
      const nodes = num(body.node, "nodes");
      health.dataset.status = "ok";
      text.textContent = nodes > 1 ? `healthy \u00b7 ${nodes} nodes` : "healthy";
      if (body.node?.id && $("node-id").textContent === "\u2013") {
        $("node-id").textContent = body.node.id;
      }
    } else {
      health.dataset.status = "down";
      text.textContent = `unhealthy (${response.status})`;
    }
  } catch (err) {
    health.dataset.status = "down";
    text.textContent = "unreachable";
  }
}

// ---- Functions list -----------------------------------------------------------------------------

async function refreshFunctions() {
  const list = await api("/api/functions");
  showBanner("");
  renderFunctions(list.functions ?? []);
  touched();
}

/** Redraws the table when the list changed; follows the selected function's changes. */
function renderFunctions(functions) {
  const json = JSON.stringify(functions);
  if (json === state.functionsJson) {
    // Unchanged: only the "deployed ... ago" texts move on.
    for (const time of $("functions-body").querySelectorAll('[data-field="deployed"] time')) {
      time.nextElementSibling.textContent = ago(time.getAttribute("datetime"));
    }
    return;
  }
  const previous = new Map(state.functions.map((f) => [f.name, f]));
  state.functionsJson = json;
  state.functions = functions;

  $("functions-count").textContent =
    functions.length === 1 ? "1 function" : `${functions.length} functions`;
  show($("functions-empty"), functions.length === 0);
  const rows = functions.map(functionRow);
  $("functions-body").replaceChildren(...rows);
  updateRowCounts();

  if (state.selected) {
    const current = functions.find((f) => f.name === state.selected);
    if (!current) {
      const gone = state.selected;
      closePanel();
      showBanner(`${gone} was deleted.`);
    } else {
      const before = previous.get(state.selected);
      renderPanelHeader(current);
      if (before && before.version !== current.version) loadDetails(current.name);
    }
  }
}

/** The limits of a function as chips (every key of `limits`). */
function limitChips(limits) {
  const entries = Object.entries(limits ?? {});
  if (entries.length === 0) return h("span", { class: "muted", text: "defaults" });
  return h(
    "span",
    { class: "chips" },
    entries.map(([key, value]) =>
      h("span", { class: "chip", text: `${key}=${typeof value === "object" ? JSON.stringify(value) : value}` }),
    ),
  );
}

function accessBadge(fn) {
  return fn.public
    ? h("span", { class: "badge badge-public", text: "public" })
    : h("span", { class: "badge badge-key", text: "key required" });
}

/** Copies `text`, falling back to selecting `input` and execCommand where the API is refused. */
async function copyText(text, input, button) {
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    input.focus();
    input.select();
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
  }
  button.textContent = copied ? "Copied" : "Press Ctrl+C";
  button.dataset.copied = String(copied);
  setTimeout(() => {
    button.textContent = "Copy";
    delete button.dataset.copied;
  }, 1500);
}

function functionRow(fn) {
  const address = h("input", {
    type: "text",
    readonly: true,
    value: fn.call_url ?? "",
    "data-field": "call-url",
    "data-testid": "call-url",
    "aria-label": `Call address of ${fn.name}`,
    title: "Works without an API key: keep it secret",
  });
  const copy = h("button", {
    type: "button",
    class: "small-button copy-button",
    "data-testid": "copy-call-url",
    text: "Copy",
  });
  copy.addEventListener("click", () => copyText(fn.call_url ?? "", address, copy));

  const row = h(
    "tr",
    {
      "data-function": fn.name,
      "data-testid": "function-row",
      "aria-selected": String(fn.name === state.selected),
    },
    h(
      "td",
      {},
      h("button", {
        type: "button",
        class: "function-name-button",
        "data-field": "name",
        text: fn.name,
        title: `Open ${fn.name}`,
      }),
    ),
    h("td", { "data-field": "language", text: fn.language }),
    h("td", { class: "num", "data-field": "version", text: fn.version }),
    h("td", { "data-field": "isolation", text: fn.isolation }),
    h("td", { "data-field": "limits" }, limitChips(fn.limits)),
    h("td", { "data-field": "access" }, accessBadge(fn)),
    h("td", { class: "num", "data-field": "invocations", text: "\u2013" }),
    h("td", {}, h("div", { class: "call-address" }, address, copy)),
    h(
      "td",
      { "data-field": "deployed", title: fn.deployed_at },
      h("time", { datetime: fn.deployed_at, text: dateTime(fn.deployed_at) }),
      h("span", { class: "muted deployed-ago", text: ago(fn.deployed_at) }),
    ),
  );
  // The whole row opens the function, except its call address controls.
  row.addEventListener("click", (event) => {
    if (event.target.closest(".call-address")) return;
    selectFunction(fn.name);
  });
  return row;
}

/** The "invocations / errors" column, from the metrics. */
function updateRowCounts() {
  const totals = state.metrics?.functions ?? {};
  for (const row of $("functions-body").rows) {
    const cell = row.querySelector('[data-field="invocations"]');
    const entry = totals[row.dataset.function];
    if (!cell) continue;
    if (!state.metrics) cell.textContent = "\u2013";
    else {
      const errors = num(entry, "errors");
      cell.textContent = `${count(num(entry, "invocations"))}${errors ? ` / ${count(errors)}` : ""}`;
      cell.title = `${count(num(entry, "invocations"))} invocations, ${count(errors)} errors since the server started`;
    }
  }
}

// ---- Selection and the function panel -----------------------------------------------------------

function selectFromHash() {
  const match = /^#fn=(.+)$/.exec(location.hash);
  if (!match) return;
  let name;
  try {
    name = decodeURIComponent(match[1]);
  } catch {
    return; // Not a name this page wrote.
  }
  if (state.functions.some((f) => f.name === name)) selectFunction(name, { scroll: false });
}

function selectFunction(name, { scroll = true } = {}) {
  if (state.selected === name) return;
  const fn = state.functions.find((f) => f.name === name);
  if (!fn) return;
  state.selected = name;
  history.replaceState(null, "", `#fn=${encodeURIComponent(name)}`);
  for (const row of $("functions-body").rows) {
    row.setAttribute("aria-selected", String(row.dataset.function === name));
  }

  const panel = $("function-panel");
  panel.dataset.function = name;
  show(panel, true);
  renderPanelHeader(fn);
  $("function-chart-name").textContent = name;
  $("invoke-prefix").textContent = `/fn/${name}/`;
  show($("invoke-result"), false);
  show($("call-box"), false);
  $("function-details").replaceChildren();
  show($("source-box"), false);
  renderQueue();
  renderFunctionChart();
  startTail(name);
  loadDetails(name);
  if (scroll) panel.scrollIntoView({ block: "start" });
}

function closePanel() {
  stopTail();
  state.selected = null;
  const panel = $("function-panel");
  show(panel, false);
  delete panel.dataset.function;
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  for (const row of $("functions-body").rows) row.setAttribute("aria-selected", "false");
}

function selectedFunction() {
  return state.functions.find((f) => f.name === state.selected) ?? null;
}

function renderPanelHeader(fn) {
  $("panel-name").textContent = fn.name;
  $("panel-badges").replaceChildren(
    h("span", { class: "badge", text: fn.language }),
    h("span", { class: "badge", text: `v${fn.version}` }),
    h("span", { class: "badge", text: `isolation: ${fn.isolation}` }),
    accessBadge(fn),
  );
}

/** The details of GET /api/functions/{name}. */
async function loadDetails(name) {
  let details;
  try {
    details = await api(`/api/functions/${fnPath(name)}`);
  } catch (err) {
    if (err instanceof AuthError) return backgroundError(err);
    if (state.selected === name) {
      $("function-details").replaceChildren(h("dd", { class: "error-text", text: err.message }));
    }
    return;
  }
  if (state.selected !== name) return;
  const rows = [];
  const add = (term, value) => {
    if (value === undefined || value === null || value === "") return;
    rows.push(h("dt", { text: term }), h("dd", {}, value));
  };
  const list = (items) =>
    items.length ? h("span", { class: "chips" }, items.map((i) => h("span", { class: "chip", text: i }))) : null;
  add("Entry", h("code", { text: details.entry }));
  add("URL", h("code", { text: details.url }));
  add("Owner", details.owner ?? h("span", { class: "muted", text: "none" }));
  add("Files", list(details.files ?? []));
  add("Env vars", list(details.env ?? []));
  add(
    "Bindings",
    list(Object.entries(details.bindings ?? {}).map(([b, t]) => `${b} \u2192 ${t?.function ?? "?"}`)),
  );
  add("Network", list(details.allow_net ?? []));
  add("Limits", limitChips(details.limits));
  if (details.wasm) add("WebAssembly", `${details.wasm.kind}, ${count(details.wasm.bytes)} bytes`);
  if (details.executor) add("Executor", details.executor);
  if (details.python) add("Python snapshot", `${count(details.python.snapshot_bytes)} bytes`);
  add("Created", `${dateTime(details.created_at)} (${ago(details.created_at)})`);
  add("Deployed", `${dateTime(details.deployed_at)} (${ago(details.deployed_at)})`);
  $("function-details").replaceChildren(...rows);

  const source = typeof details.source === "string" ? details.source : "";
  $("function-source").textContent =
    source.length > MAX_BODY_SHOWN ? `${source.slice(0, MAX_BODY_SHOWN)}\n\u2026 (cut)` : source;
  show($("source-box"), source !== "");
}

// ---- Invoke -------------------------------------------------------------------------------------

/** The path typed after /fn/{name}/, without leading slashes. */
function invokePath() {
  return $("invoke-path").value.trim().replace(/^\/+/, "");
}

/** Headers for an invocation of `fn`: the key only when the function is not public. */
function invokeHeaders(fn, withBody) {
  const headers = {};
  const type = $("invoke-content-type").value.trim();
  if (withBody && type) headers["content-type"] = type;
  if (fn && !fn.public) Object.assign(headers, authHeaders());
  return headers;
}

/** Pretty-prints `text` when it is JSON, and cuts very long bodies. */
function prettyBody(text, contentType) {
  const trimmed = text.trim();
  if (/json/i.test(contentType ?? "") || /^[[{]/.test(trimmed)) {
    try {
      return JSON.stringify(JSON.parse(trimmed), null, 2);
    } catch {
      // Not JSON after all: shown as it is.
    }
  }
  return text.length > MAX_BODY_SHOWN ? `${text.slice(0, MAX_BODY_SHOWN)}\n\u2026 (cut)` : text;
}

async function invoke(event) {
  event.preventDefault();
  const fn = selectedFunction();
  if (!fn) return;
  const method = $("invoke-method").value;
  const withBody = method !== "GET";
  const url = `/fn/${fnPath(fn.name)}/${invokePath()}`;
  const button = $("invoke-send");
  button.disabled = true;
  const started = performance.now();
  let response;
  let text = "";
  try {
    response = await send(url, {
      method,
      headers: invokeHeaders(fn, withBody),
      body: withBody ? $("invoke-body").value : undefined,
    });
    text = await response.text();
  } catch (err) {
    showInvokeResult({ status: 0, statusText: err.message, elapsed: performance.now() - started });
    return;
  } finally {
    button.disabled = false;
    metricsPoller.kick();
  }
  showInvokeResult({
    status: response.status,
    statusText: response.statusText,
    elapsed: performance.now() - started,
    headers: [...response.headers.entries()],
    body: prettyBody(text, response.headers.get("content-type")),
  });
}

function showInvokeResult({ status, statusText, elapsed, headers = [], body = "" }) {
  const result = $("invoke-result");
  show(result, true);
  // Counts the answers shown, so that a reader can tell a new one from the last.
  result.dataset.sequence = String(Number(result.dataset.sequence ?? 0) + 1);
  const badge = $("invoke-status");
  badge.textContent = status ? String(status) : "failed";
  badge.dataset.class = String(Math.floor(status / 100));
  badge.dataset.status = String(status);
  $("invoke-status-text").textContent = statusText ?? "";
  $("invoke-elapsed").textContent = `${elapsed.toFixed(1)} ms`;
  $("invoke-elapsed").dataset.ms = elapsed.toFixed(1);
  $("invoke-headers").textContent = headers.map(([k, v]) => `${k}: ${v}`).join("\n");
  $("invoke-response").textContent = body;
}

// ---- Asynchronous calls ---------------------------------------------------------------------------

async function queueCall() {
  const fn = selectedFunction();
  if (!fn) return;
  const query = invokePath().includes("?") ? invokePath().slice(invokePath().indexOf("?")) : "";
  const button = $("queue-call");
  button.disabled = true;
  const box = $("call-box");
  const output = $("call-output");
  try {
    const type = $("invoke-content-type").value.trim();
    const answer = await api(`/api/functions/${fnPath(fn.name)}/calls${query}`, {
      method: "POST",
      body: $("invoke-body").value,
      headers: type ? { "content-type": type } : {},
    });
    $("call-id").textContent = answer.call_id;
    box.dataset.callId = answer.call_id;
    show(output, false);
    show($("call-result"), true);
  } catch (err) {
    if (err instanceof AuthError) return backgroundError(err);
    $("call-id").textContent = "";
    delete box.dataset.callId;
    output.textContent = `Not queued: ${err.message}`;
    show(output, true);
    show($("call-result"), false);
  } finally {
    show(box, true);
    button.disabled = false;
    metricsPoller.kick();
  }
}

/** GET /api/calls/{id}?wait=10: the call's answer (the server forgets it once fetched). */
async function fetchCallResult() {
  const id = $("call-box").dataset.callId;
  if (!id) return;
  const output = $("call-output");
  const button = $("call-result");
  button.disabled = true;
  output.textContent = "waiting for the result\u2026";
  show(output, true);
  try {
    const response = await send(`/api/calls/${encodeURIComponent(id)}?wait=10`, {
      headers: authHeaders(),
    });
    if (response.status === 401) throw new AuthError((await errorOf(response)).message);
    const text = await response.text();
    const callState = response.headers.get("x-call-state");
    let head = `HTTP ${response.status}`;
    if (callState) head += ` \u00b7 ${callState}`;
    if (response.status === 202) head += " \u00b7 still pending or running: try again";
    if (response.status === 404) head += " \u00b7 unknown, or already fetched";
    output.textContent = `${head}\n${prettyBody(text, response.headers.get("content-type"))}`;
    output.dataset.status = String(response.status);
  } catch (err) {
    if (err instanceof AuthError) return backgroundError(err);
    output.textContent = `Failed: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

/** The selected function's queue numbers, from the last metrics. */
function renderQueue() {
  const ids = ["queue-pending", "queue-claimed", "fn-running", "fn-queued", "fn-invocations", "fn-errors"];
  if (!state.metrics || !state.selected) {
    for (const id of ids) $(id).textContent = "\u2013";
    return;
  }
  const entry = state.metrics.functions?.[state.selected] ?? {};
  const calls = entry.calls ?? {};
  $("queue-pending").textContent = count(num(calls, "pending"));
  // Claimed by this node: waiting for their turn here, or running.
  $("queue-claimed").textContent = count(num(calls, "claimed"));
  $("fn-running").textContent = count(num(entry, "running"));
  $("fn-queued").textContent = count(num(entry, "queued"));
  $("fn-invocations").textContent = count(num(entry, "invocations"));
  $("fn-errors").textContent = count(num(entry, "errors"));
}

// ---- Log tail -------------------------------------------------------------------------------------

/** The live tail of the selected function's logs. */
const tail = {
  name: null,
  /** The id of the last line read: the `after` cursor. */
  after: 0,
  /** Bumped to end the loop that runs; a loop runs while its number is current. */
  generation: 0,
  controller: null,
  paused: false,
};

function startTail(name) {
  stopTail();
  tail.name = name;
  tail.after = 0;
  tail.paused = false;
  $("log-pause").textContent = "Pause";
  $("log-tail").replaceChildren();
  runTail(++tail.generation, true);
}

function stopTail() {
  tail.generation++;
  tail.controller?.abort();
  tail.controller = null;
  setLogStatus("idle", "");
}

function togglePause() {
  if (!tail.name) return;
  if (tail.paused) {
    tail.paused = false;
    $("log-pause").textContent = "Pause";
    runTail(++tail.generation, false);
  } else {
    tail.paused = true;
    tail.generation++;
    tail.controller?.abort();
    $("log-pause").textContent = "Resume";
    setLogStatus("paused", "paused");
  }
}

function setLogStatus(stateName, text) {
  const status = $("log-status");
  status.dataset.state = stateName;
  status.textContent = text;
}

async function readLogs(name, after, limit, wait, signal) {
  const query = new URLSearchParams({ after: String(after), limit: String(limit) });
  if (wait) query.set("wait", String(wait));
  const page = await api(`/api/functions/${fnPath(name)}/logs?${query}`, { signal });
  return Array.isArray(page.logs) ? page.logs : [];
}

/**
 * The tail's loop: first (when `catchUp`) it reads every stored line to find the newest
 * MAX_LOG_LINES (the API answers oldest first), then it long-polls for new lines after the
 * cursor until its generation ends.
 */
async function runTail(generation, catchUp) {
  const live = () => generation === tail.generation;
  const name = tail.name;
  const controller = new AbortController();
  tail.controller = controller;
  let failures = 0;
  try {
    if (catchUp) {
      setLogStatus("loading", "loading\u2026");
      let backlog = [];
      for (;;) {
        const page = await readLogs(name, tail.after, LOG_PAGE, 0, controller.signal);
        if (!live()) return;
        if (page.length) tail.after = page[page.length - 1].id;
        backlog = backlog.concat(page);
        if (backlog.length > MAX_LOG_LINES) backlog = backlog.slice(-MAX_LOG_LINES);
        if (page.length < LOG_PAGE) break;
      }
      if (backlog.length) appendLogLines(backlog);
      else appendLogNotice("No log lines yet: invoke the function to see its console output here.");
    }
    while (live()) {
      setLogStatus("live", "live");
      try {
        const page = await readLogs(name, tail.after, 1000, LOG_WAIT_SECONDS, controller.signal);
        if (!live()) return;
        if (page.length) {
          tail.after = page[page.length - 1].id;
          appendLogLines(page);
        }
        failures = 0;
      } catch (err) {
        if (!live() || err?.name === "AbortError") return;
        if (err instanceof AuthError) throw err;
        if (err instanceof HttpError && err.status === 404) {
          setLogStatus("error", "the function is gone");
          return;
        }
        failures += 1;
        const delay = Math.min(30_000, 1000 * 2 ** Math.min(failures, 5));
        setLogStatus("error", `reconnecting in ${Math.round(delay / 1000)} s: ${err.message}`);
        await sleep(delay);
      }
    }
  } catch (err) {
    if (!live() || err?.name === "AbortError") return;
    if (err instanceof AuthError) return backgroundError(err);
    setLogStatus("error", `stopped: ${err.message}`);
  }
}

/** The message's lifecycle word (CALL, PENDING, RUNNING, FINISHED, FAILED), if it starts with one. */
function lifecycleEvent(message) {
  return /^(CALL|PENDING|RUNNING|FINISHED|FAILED)\b/.exec(message)?.[1] ?? null;
}

function logLine(line) {
  let message = String(line.message ?? "");
  if (message.length > MAX_LOG_MESSAGE) {
    message = `${message.slice(0, MAX_LOG_MESSAGE)} \u2026 (${count(message.length - MAX_LOG_MESSAGE)} more characters)`;
  }
  const level = String(line.level ?? "");
  const source = String(line.source ?? "");
  return h(
    "div",
    {
      class: "log-line",
      "data-testid": "log-line",
      "data-id": line.id,
      "data-level": level.toLowerCase(),
      "data-source": source,
      "data-event": lifecycleEvent(message),
    },
    h("time", { class: "log-time", datetime: line.timestamp, title: line.timestamp, text: clockMs(line.timestamp) }),
    h("span", { class: "log-level", text: level }),
    h("span", { class: "log-source", text: source }),
    h("span", { class: "log-message", text: message }),
  );
}

function appendLogNotice(text) {
  $("log-tail").append(h("div", { class: "log-notice", text }));
}

/** Appends lines, keeps the newest MAX_LOG_LINES, and follows the bottom if it was there. */
function appendLogLines(lines) {
  const box = $("log-tail");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  for (const notice of box.querySelectorAll(".log-notice")) notice.remove();
  const fragment = document.createDocumentFragment();
  for (const line of lines.slice(-MAX_LOG_LINES)) fragment.append(logLine(line));
  box.append(fragment);
  let extra = box.childElementCount - MAX_LOG_LINES;
  while (extra-- > 0) box.firstElementChild?.remove();
  box.dataset.lines = String(box.childElementCount);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

// ---- Metrics ----------------------------------------------------------------------------------------

async function refreshMetrics() {
  try {
    state.metrics = await api("/api/metrics");
    state.metricsError = null;
  } catch (err) {
    if (err instanceof AuthError) throw err;
    state.metrics = null;
    state.metricsError = err;
  }
  renderMetrics();
}

function renderMetrics() {
  const metrics = state.metrics;
  if (metrics?.node) $("node-id").textContent = metrics.node;
  const history = Array.isArray(metrics?.history) ? metrics.history : [];
  const invocations = history.reduce((sum, step) => sum + num(step, "invocations"), 0);
  const errors = history.reduce((sum, step) => sum + num(step, "errors"), 0);
  $("host-totals").textContent = metrics
    ? `last hour: ${count(invocations)} invocations, ${count(errors)} errors`
    : "";
  const lastLatency = [...history].reverse().find((step) => isValue(step.latency_ms?.p50));
  $("latency-summary").textContent = lastLatency
    ? `latest: p50 ${millis(lastLatency.latency_ms.p50)}, p99 ${millis(lastLatency.latency_ms.p99)}`
    : "";
  drawHostCharts();
  renderFunctionChart();
  renderQueue();
  updateRowCounts();
}

/** The text shown in a chart box when there is nothing to draw. */
function chartUnavailable(box) {
  const message = state.metricsError
    ? `Metrics unavailable: ${state.metricsError.message}`
    : "Loading metrics\u2026";
  box.replaceChildren(h("p", { class: "muted small", text: message }));
}

/**
 * The history's steps as `{start, end, ...pick(entry)}`. A step's `at` is when it ended (the
 * last one, still under way, may end now): it started where the step before ended, at most
 * `step` seconds earlier.
 */
function stepsOf(history, step, pick) {
  const stepMs = step * 1000;
  return history.map((entry, i) => {
    const end = num(entry, "at");
    const before = i > 0 ? num(history[i - 1], "at") : end - stepMs;
    return { start: Math.min(end, Math.max(before, end - stepMs)), end, ...pick(entry) };
  });
}

function drawHostCharts() {
  const metrics = state.metrics;
  const invocationsBox = $("chart-invocations-box");
  const latencyBox = $("chart-latency-box");
  if (!metrics) {
    chartUnavailable(invocationsBox);
    chartUnavailable(latencyBox);
    return;
  }
  const step = num(metrics, "step_seconds") || 10;
  const history = Array.isArray(metrics.history) ? metrics.history : [];
  drawBarChart(invocationsBox, {
    id: "chart-invocations",
    label: "Invocations and errors per step, whole host, last hour",
    step,
    points: stepsOf(history, step, (entry) => ({
      total: num(entry, "invocations"),
      errors: num(entry, "errors"),
    })),
  });
  drawLatencyChart(latencyBox, {
    id: "chart-latency",
    step,
    // latency_ms is null, or has null values, in a step without invocations.
    points: stepsOf(history, step, (entry) => ({
      p50: entry.latency_ms?.p50 ?? null,
      p99: entry.latency_ms?.p99 ?? null,
    })),
  });
}

function renderFunctionChart() {
  const box = $("chart-function-box");
  const name = state.selected;
  if (!name) return;
  const metrics = state.metrics;
  if (!metrics) {
    chartUnavailable(box);
    $("function-totals").textContent = "";
    return;
  }
  const step = num(metrics, "step_seconds") || 10;
  const history = Array.isArray(metrics.history) ? metrics.history : [];
  const points = stepsOf(history, step, (entry) => {
    const own = entry.functions?.[name];
    return { total: num(own, "invocations"), errors: num(own, "errors") };
  });
  const total = points.reduce((sum, p) => sum + p.total, 0);
  const errors = points.reduce((sum, p) => sum + p.errors, 0);
  $("function-totals").textContent = `last hour: ${count(total)} invocations, ${count(errors)} errors`;
  drawBarChart(box, {
    id: "chart-function-invocations",
    label: `Invocations and errors of ${name} per step, last hour`,
    step,
    points,
    attrs: { "data-function": name },
  });
}

// ---- Charts (SVG, drawn with DOM APIs) ---------------------------------------------------------------

const CHART_HEIGHT = 190;
const MARGIN = { left: 46, right: 12, top: 12, bottom: 24 };

/** A "nice" axis from 0 to at least `max`, with about four ticks. */
function niceAxis(max, integers) {
  if (!(max > 0)) max = integers ? 4 : 1;
  const rough = max / 4;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const factors = integers ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  let step = factors.map((f) => f * magnitude).find((candidate) => candidate >= rough) ?? rough;
  if (integers) step = Math.max(1, Math.round(step));
  const top = Math.ceil(max / step - 1e-9) * step;
  const ticks = [];
  for (let i = 0; i * step <= top + step / 1e6; i++) ticks.push(+(i * step).toPrecision(12));
  return { top, ticks };
}

/**
 * The frame every chart shares: an SVG as wide as its box, the time axis over the last hour
 * (ending with the last step), a value axis with grid lines, and the scales.
 */
function chartFrame(box, { id, label, step, points, axisMax, integers, format }) {
  const width = Math.max(260, Math.floor(box.clientWidth || 600));
  const height = CHART_HEIGHT;
  const plot = {
    left: MARGIN.left,
    right: width - MARGIN.right,
    top: MARGIN.top,
    bottom: height - MARGIN.bottom,
  };
  const end = points.length ? points[points.length - 1].end : Date.now();
  const start = end - HOUR_MS;
  const x = (t) => plot.left + ((t - start) / HOUR_MS) * (plot.right - plot.left);
  const axis = niceAxis(axisMax, integers);
  const y = (v) => plot.bottom - (v / axis.top) * (plot.bottom - plot.top);

  const svg = s("svg", {
    id,
    "data-testid": id,
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": label,
    "data-steps": points.length,
    "data-step-seconds": step,
  });
  svg.append(s("title", { text: label }));

  // Value axis: grid lines and labels.
  const grid = s("g", { class: "y-axis" });
  for (const tick of axis.ticks) {
    const ty = y(tick);
    grid.append(
      s("line", { class: "grid-line", x1: plot.left, x2: plot.right, y1: ty, y2: ty }),
      s("text", { class: "axis-label", x: plot.left - 6, y: ty + 4, "text-anchor": "end", text: format(tick) }),
    );
  }
  svg.append(grid);

  // Time axis: a label every 10 minutes (20 on narrow charts), on the clock.
  const every = (plot.right - plot.left) < 420 ? 20 * 60_000 : 10 * 60_000;
  const times = s("g", { class: "x-axis" });
  times.append(s("line", { class: "axis-line", x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom }));
  for (let t = Math.ceil(start / every) * every; t <= end; t += every) {
    const tx = x(t);
    times.append(
      s("line", { class: "axis-line", x1: tx, x2: tx, y1: plot.bottom, y2: plot.bottom + 4 }),
      s("text", { class: "axis-label", x: tx, y: plot.bottom + 16, "text-anchor": "middle", text: clockShort(t) }),
    );
  }
  svg.append(times);
  return { svg, plot, x, y, width, stepWidth: ((step * 1000) / HOUR_MS) * (plot.right - plot.left) };
}

/** A transparent column per step whose tooltip says what the step holds. */
function hoverColumns(frame, points, describe) {
  const group = s("g", { class: "hover-columns" });
  for (const point of points) {
    const left = Math.max(frame.plot.left, frame.x(point.start));
    const right = Math.min(frame.plot.right, frame.x(point.end));
    if (right <= left) continue;
    group.append(
      s(
        "rect",
        {
          class: "hover-column",
          x: left.toFixed(2),
          y: frame.plot.top,
          width: (right - left).toFixed(2),
          height: frame.plot.bottom - frame.plot.top,
        },
        s("title", { text: `${clock(point.start)}\u2013${clock(point.end)}: ${describe(point)}` }),
      ),
    );
  }
  return group;
}

function emptyNote(frame, text) {
  return s("text", {
    class: "chart-empty",
    x: (frame.plot.left + frame.plot.right) / 2,
    y: (frame.plot.top + frame.plot.bottom) / 2,
    "text-anchor": "middle",
    text,
  });
}

/** Stacked bars per step: invocations that succeeded, and errors on top. */
function drawBarChart(box, { id, label, step, points, attrs = {} }) {
  const totalInvocations = points.reduce((sum, p) => sum + p.total, 0);
  const totalErrors = points.reduce((sum, p) => sum + p.errors, 0);
  const max = points.reduce((m, p) => Math.max(m, p.total, p.errors), 0);
  const frame = chartFrame(box, { id, label, step, points, axisMax: max, integers: true, format: shortCount });
  const { svg, plot, x, y } = frame;
  build(svg, {
    ...attrs,
    "data-total-invocations": totalInvocations,
    "data-total-errors": totalErrors,
    "data-max": max,
  }, []);

  const gap = frame.stepWidth > 3 ? 1 : 0;
  const bars = s("g", { class: "bars" });
  for (const p of points) {
    if (p.total <= 0 && p.errors <= 0) continue;
    const left = x(p.start);
    if (left < plot.left - 0.5) continue;
    // At least 2 px, so that one busy step in a quiet hour still shows.
    const width = Math.max(2, x(p.end) - left - gap);
    const errors = Math.min(p.errors, Math.max(p.total, p.errors));
    const ok = Math.max(0, p.total - errors);
    const okTop = y(ok);
    if (ok > 0) {
      bars.append(s("rect", { class: "bar-ok", x: left.toFixed(2), y: okTop.toFixed(2), width: width.toFixed(2), height: (plot.bottom - okTop).toFixed(2) }));
    }
    if (errors > 0) {
      const errTop = y(ok + errors);
      bars.append(s("rect", { class: "bar-error", x: left.toFixed(2), y: errTop.toFixed(2), width: width.toFixed(2), height: (okTop - errTop).toFixed(2) }));
    }
  }
  svg.append(bars);
  if (totalInvocations === 0) svg.append(emptyNote(frame, "No invocations in the last hour"));
  svg.append(hoverColumns(frame, points, (p) => `${count(p.total)} invocations, ${count(p.errors)} errors`));
  box.replaceChildren(svg);
}

/** p50 and p99 latency per step as lines (a gap where a step had no invocations). */
function drawLatencyChart(box, { id, step, points }) {
  const valid = points.filter((p) => isValue(p.p50) || isValue(p.p99));
  const max = valid.reduce((m, p) => Math.max(m, isValue(p.p50) ? p.p50 : 0, isValue(p.p99) ? p.p99 : 0), 0);
  const frame = chartFrame(box, {
    id,
    label: "Latency p50 and p99 per step, whole host, last hour",
    step,
    points,
    axisMax: max,
    integers: false,
    format: (v) => (v === 0 ? "0" : millis(v)),
  });
  const { svg, x, y } = frame;
  const last = valid[valid.length - 1];
  build(svg, {
    "data-steps-with-latency": valid.length,
    "data-max-ms": max,
    "data-last-p50": last?.p50 ?? "",
    "data-last-p99": last?.p99 ?? "",
  }, []);

  for (const key of ["p99", "p50"]) {
    let d = "";
    let segment = [];
    const dots = s("g", {});
    const flush = () => {
      if (segment.length === 1) {
        dots.append(s("circle", { class: `dot-${key}`, cx: segment[0][0].toFixed(2), cy: segment[0][1].toFixed(2), r: 2.5 }));
      } else if (segment.length > 1) {
        d += segment.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(2)},${py.toFixed(2)}`).join("");
      }
      segment = [];
    };
    for (const p of points) {
      const value = p[key];
      if (!isValue(value)) {
        flush();
        continue;
      }
      segment.push([x((p.start + p.end) / 2), y(value)]);
    }
    flush();
    if (d) svg.append(s("path", { class: `line-${key}`, d, "data-series": key }));
    svg.append(dots);
  }
  if (valid.length === 0) svg.append(emptyNote(frame, "No invocations in the last hour"));
  svg.append(
    hoverColumns(frame, points, (p) =>
      isValue(p.p50) ? `p50 ${millis(p.p50)}, p99 ${millis(p.p99)}` : "no invocations",
    ),
  );
  box.replaceChildren(svg);
}

/** Redraws the charts when their boxes change width. */
function watchChartSizes() {
  let frame = 0;
  const widths = new Map();
  const observer = new ResizeObserver((entries) => {
    let changed = false;
    for (const entry of entries) {
      const width = Math.floor(entry.contentRect.width);
      if (widths.get(entry.target) !== width) {
        widths.set(entry.target, width);
        changed = true;
      }
    }
    if (!changed || frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      if (state.metrics) {
        drawHostCharts();
        renderFunctionChart();
      }
    });
  });
  for (const id of ["chart-invocations-box", "chart-latency-box", "chart-function-box"]) observer.observe($(id));
}

// ---- Wiring --------------------------------------------------------------------------------------------

function init() {
  $("key-form").addEventListener("submit", submitKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("refresh-functions").addEventListener("click", () => functionsPoller.kick());
  $("panel-close").addEventListener("click", closePanel);
  $("invoke-form").addEventListener("submit", invoke);
  $("queue-call").addEventListener("click", queueCall);
  $("call-result").addEventListener("click", fetchCallResult);
  $("log-pause").addEventListener("click", togglePause);
  $("log-clear").addEventListener("click", () => {
    $("log-tail").replaceChildren();
    $("log-tail").dataset.lines = "0";
  });
  $("invoke-body").value = DEFAULT_BODY;
  window.addEventListener("hashchange", selectFromHash);
  watchChartSizes();
  chartUnavailable($("chart-invocations-box"));
  chartUnavailable($("chart-latency-box"));
  connect();
}

init();
