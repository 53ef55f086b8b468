// Talking to the service: every /v1 call goes through `call`, which adds the API key the user
// typed (kept in this browser's localStorage, sent only as a header: never in a URL, never logged).

const KEY_STORAGE = "labcrunch.apiKey";

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** An RFC 9457 problem answered by the service (or a network failure, status 0). */
export class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function problemOf(response) {
  try {
    return new Problem(response.status, await response.json());
  } catch {
    return new Problem(response.status, { title: response.statusText || `HTTP ${response.status}` });
  }
}

/** `method` `path` with a JSON `body`; resolves to the parsed JSON (or a Blob with as: "blob"). */
export async function call(method, path, body, { as = "json", signal } = {}) {
  const headers = { ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Problem(0, { title: "The service could not be reached", detail: String(error) });
  }
  if (!response.ok) throw await problemOf(response);
  return as === "blob" ? response.blob() : response.json();
}

const NON_FINITE = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };

/** Numbers of a JSON answer, with the service's spellings of non-finite values turned back. */
export function num(value) {
  if (Array.isArray(value)) return value.map(num);
  return typeof value === "string" && value in NON_FINITE ? NON_FINITE[value] : value;
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * Shows an error in `box`: the problem's title and detail, each field error with where it is,
 * and, for errors of the maths language, the offending line of `source` with a caret under the
 * column. Returns the first (line, column) found, so an editor can select it.
 */
export function showProblem(box, error, source) {
  box.replaceChildren();
  box.hidden = false;
  box.classList.add("problem");
  if (!(error instanceof Problem)) {
    box.append(el("strong", {}, "Error: "), String(error && error.message ? error.message : error));
    return null;
  }
  const body = error.body;
  const status = error.status ? `${error.status} ` : "";
  box.append(el("strong", { class: "problem-title" }, `${status}${body.title || "Error"}`));
  // The detail repeats a single field error: show it only when there is no list.
  if (body.detail && !(body.errors || []).length) box.append(el("div", { class: "problem-detail" }, body.detail));
  let first = null;
  for (const item of body.errors || []) {
    const where = (item.loc || []).filter((part) => part !== "body" && part !== "query").join(".");
    const position = item.line ? ` (line ${item.line}, column ${item.column})` : "";
    const entry = el("div", { class: "problem-item" },
      el("code", {}, where || "request"), `${position}: ${item.msg}`);
    box.append(entry);
    if (item.line && source !== undefined && first === null) {
      first = { line: item.line, column: item.column };
      const text = source.split("\n")[item.line - 1] ?? "";
      const caret = " ".repeat(Math.max(0, item.column - 1)) + "^";
      box.append(el("pre", { class: "problem-source" }, `${text}\n${caret}`));
    }
  }
  if (error.status === 401) {
    box.append(el("div", { class: "problem-hint" },
      "This server needs an API key: type it in the key field at the top of the page."));
  }
  return first;
}

export function clearProblem(box) {
  box.replaceChildren();
  box.hidden = true;
}

/** Formats a number for tables and legends: up to `digits` significant digits. */
export function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1e5 || magnitude < 1e-3) return value.toExponential(digits - 1);
  return String(Number(value.toPrecision(digits)));
}

/** Evenly spaced numbers from `start` to `stop` (both included). */
export function linspace(start, stop, count) {
  if (count === 1) return [start];
  const step = (stop - start) / (count - 1);
  return Array.from({ length: count }, (_, i) => (i === count - 1 ? stop : start + i * step));
}

/** Parses "y = 1.5, z = -2" into {y: 1.5, z: -2}; throws on anything else. */
export function parseAssignments(text) {
  const values = {};
  for (const part of text.split(/[,;\n]/)) {
    if (!part.trim()) continue;
    const match = part.match(/^\s*([A-Za-z_\u00C0-\uFFFF][\w\u00C0-\uFFFF]*)\s*=\s*(\S+)\s*$/);
    const value = match ? Number(match[2]) : NaN;
    if (!match || !Number.isFinite(value)) throw new Error(`cannot read "${part.trim()}": write name = number`);
    values[match[1]] = value;
  }
  return values;
}
