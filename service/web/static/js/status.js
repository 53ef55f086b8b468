// The status view: the service's version, devices, compute queue and workers (GET /v1/info),
// the caller's jobs (GET /v1/jobs, on servers that have it), and links to the docs.

import { call, el, fmt, Problem, showProblem, clearProblem } from "./api.js";

function card(title, ...content) {
  return el("section", { class: "card" }, el("h3", {}, title), ...content);
}

function definitions(pairs) {
  return el("dl", { class: "pairs" }, pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

function meter(used, capacity, label) {
  const fraction = capacity > 0 ? Math.min(1, used / capacity) : 0;
  return el("div", { class: "meter", title: label },
    el("div", { class: "meter-fill", style: `width: ${(100 * fraction).toFixed(1)}%` }),
    el("span", { class: "meter-text" }, label));
}

function backendCard(name, backend) {
  if (!backend) return null;
  const state = backend.available === true ? "available" : backend.available === false ? "unavailable" : "not loaded yet";
  const pairs = [["state", state], ["version", backend.version || "–"]];
  if (backend.default_device) pairs.push(["default device", el("code", { class: "device" }, backend.default_device)]);
  if (backend.devices && backend.devices.length) pairs.push(["devices", backend.devices.join(", ")]);
  if (backend.reason) pairs.push(["note", backend.reason]);
  return card(name, definitions(pairs));
}

/** A table of objects (the workers or jobs lists): one column per key any entry has. */
export function objectTable(rows, preferred = []) {
  const keys = [...new Set([...preferred.filter((k) => rows.some((r) => k in r)), ...rows.flatMap(Object.keys)])];
  const cell = (value) => {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number") return fmt(value, 6);
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  };
  return el("table", { class: "data" },
    el("thead", {}, el("tr", {}, keys.map((k) => el("th", {}, k.replaceAll("_", " "))))),
    el("tbody", {}, rows.map((row) => el("tr", {}, keys.map((k) => el("td", { "data-key": k }, cell(row[k])))))));
}

function workersOf(info) {
  const list = info.workers ?? info.compute?.workers;
  return Array.isArray(list) ? list : null;
}

// What a person reads in a worker's entry of /v1/info: which one, where, doing what, for whom.
function workerRow(worker) {
  return {
    id: worker.id, node: worker.node, device: worker.device, state: worker.state,
    task: worker.task ? worker.task.split(":").pop() : null, owner: worker.owner,
    jobs_done: worker.jobs_done, restarts: worker.restarts,
    memory_MiB: worker.rss_bytes == null ? null : Math.round(worker.rss_bytes / 2 ** 20),
  };
}

function jobsOf(answer) {
  if (Array.isArray(answer)) return answer;
  for (const key of ["jobs", "items", "data"]) if (Array.isArray(answer?.[key])) return answer[key];
  return null;
}

function progressCell(job) {
  const progress = job.progress;
  if (!progress || typeof progress.fraction !== "number") return job.status ?? "";
  return meter(progress.fraction, 1, `${progress.done ?? ""}/${progress.total ?? ""} ${progress.unit ?? ""}`.trim());
}

export class StatusView {
  constructor(root) {
    this.root = root;
    this.problem = root.querySelector(".problem-box");
    this.body = root.querySelector(".status-body");
    this.timer = null;
  }

  show() {
    this.refresh();
    this.timer = setInterval(() => this.refresh(), 5000);
  }

  hide() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async refresh() {
    let info;
    try {
      info = await call("GET", "/v1/info");
    } catch (error) {
      showProblem(this.problem, error);
      this.body.replaceChildren();
      return;
    }
    clearProblem(this.problem);
    const compute = info.compute || {};
    const workers = workersOf(info);
    const cards = [
      card("Service", definitions([
        ["version", el("span", { class: "version" }, info.version)],
        ["ready", info.ready ? "yes" : "warming up…"],
        ["API keys", info.auth === "api-key" ? "required" : "not required"],
        ...Object.entries(info.warmup_errors || {}).map(([domain, error]) => [`warm-up of ${domain}`, error]),
      ])),
      backendCard("JAX", info.backends?.jax),
      backendCard("TensorFlow", info.backends?.tensorflow),
      card("Compute queue", definitions([
        ["in flight", meter(compute.in_flight ?? 0, (compute.max_concurrent_jobs ?? 0) + (compute.max_queued_jobs ?? 0),
          `${compute.in_flight ?? 0} running or queued`)],
        ["capacity", `${compute.max_concurrent_jobs ?? "?"} at once, ${compute.max_queued_jobs ?? "?"} more may wait`],
        ...Object.entries(compute).filter(([k, v]) => typeof v !== "object" && !["in_flight", "max_concurrent_jobs", "max_queued_jobs"].includes(k))
          .map(([k, v]) => [k.replaceAll("_", " "), String(v)]),
      ])),
    ];
    const workersCard = card("Workers", workers
      ? (workers.length ? objectTable(workers.map(workerRow)) : el("p", {}, "No workers."))
      : el("p", { class: "muted" }, "This server runs computations in its own process (it lists no workers)."));
    workersCard.id = "workers";
    workersCard.classList.add("wide");
    const jobsCard = card("Your jobs", el("p", { class: "muted" }, "…"));
    jobsCard.id = "jobs";
    const links = card("Documents", el("ul", { class: "links" },
      el("li", {}, el("a", { href: "/docs" }, "API docs"), " (Swagger UI: try every operation)"),
      el("li", {}, el("a", { href: "/redoc" }, "API reference"), " (ReDoc)"),
      el("li", {}, el("a", { href: "/openapi.json" }, "OpenAPI document")),
      el("li", {}, el("a", { href: "/metrics" }, "metrics"), " (Prometheus, where the server exports them)")));
    const limits = card("Limits", el("details", {}, el("summary", {}, `${Object.keys(info.limits || {}).length} limits on one request`),
      definitions(Object.entries(info.limits || {}).map(([k, v]) => [k, fmt(v, 8)]))));
    this.body.replaceChildren(el("div", { class: "cards" }, cards, workersCard, jobsCard, links, limits));
    this.refreshJobs(jobsCard);
  }

  async refreshJobs(jobsCard) {
    let content;
    try {
      const jobs = jobsOf(await call("GET", "/v1/jobs"));
      content = jobs === null ? el("p", { class: "muted" }, "Unrecognised answer from /v1/jobs.")
        : jobs.length === 0 ? el("p", {}, "No jobs.")
          : objectTable(jobs.map(({ progress, ...rest }) => rest), ["id", "status", "endpoint", "created"]);
      if (jobs && jobs.length) {
        // The progress column: a bar per running job.
        const table = content;
        table.querySelector("thead tr").append(el("th", {}, "progress"));
        table.querySelectorAll("tbody tr").forEach((row, i) => row.append(el("td", {}, progressCell(jobs[i]))));
      }
    } catch (error) {
      content = error instanceof Problem && error.status === 404
        ? el("p", { class: "muted" }, "This server has no jobs API yet: every computation is answered within its request.")
        : el("p", { class: "muted" }, `Jobs unavailable: ${error.message}`);
    }
    jobsCard.replaceChildren(el("h3", {}, "Your jobs"), content);
  }
}
