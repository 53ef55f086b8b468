// Optimizer paths: a function of two variables as contours, with the path of every optimizer
// and learning rate from POST /v1/minimize (one request per optimizer, all its rates at once),
// stepped with a slider or played. The contours come from one batched POST /v1/gradient over
// the region the paths visit.

import { call, clearProblem, el, fmt, linspace, num, showProblem } from "./api.js";
import { COLORS } from "./charts.js";
import { Plane } from "./plot2d.js";
import { FormView } from "./view.js";

const GRID = 81;

function finiteBox(points) {
  const box = { x: [Infinity, -Infinity], y: [Infinity, -Infinity] };
  for (const [x, y] of points) {
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    box.x = [Math.min(box.x[0], x), Math.max(box.x[1], x)];
    box.y = [Math.min(box.y[0], y), Math.max(box.y[1], y)];
  }
  return box;
}

function padded([low, high], fraction = 0.15) {
  const span = high - low || Math.max(1, Math.abs(low));
  return [low - fraction * span, high + fraction * span];
}

export class PathsView extends FormView {
  constructor(root) {
    super(root);
    this.figure = root.querySelector(".paths-figure");
    this.table = root.querySelector(".paths-table");
    this.slider = root.querySelector(".paths-step");
    this.play = root.querySelector(".paths-play");
    this.runs = [];
    this.slider.addEventListener("input", () => this.step(Number(this.slider.value)));
    this.play.addEventListener("click", () => this.animate());
  }

  hide() {
    cancelAnimationFrame(this.frame);
  }

  request(optimizer, rates) {
    const f = this.form.elements;
    const start = { [f.x_name.value.trim()]: Number(f.x_start.value), [f.y_name.value.trim()]: Number(f.y_start.value) };
    const body = { expression: f.expression.value, start, optimizer, steps: Number(f.steps.value), backend: "jax" };
    if (optimizer !== "lbfgs") body.learning_rate = rates;
    return body;
  }

  async run() {
    await super.run();
    cancelAnimationFrame(this.frame);
    const f = this.form.elements;
    const optimizers = [...this.form.querySelectorAll("input[name=optimizer]:checked")].map((box) => box.value);
    const rates = f.rates.value.split(/[,\s]+/).filter(Boolean).map(Number);
    if (!optimizers.length) return showProblem(this.problem, new Error("pick at least one optimizer"));
    if (!rates.length || rates.some((r) => !(r > 0))) return showProblem(this.problem, new Error("learning rates: positive numbers, separated by commas"));
    const names = [f.x_name.value.trim(), f.y_name.value.trim()];
    await this.busy(async () => {
      try {
        await this.compute(optimizers, rates, names);
        clearProblem(this.problem);
      } catch (error) {
        showProblem(this.problem, error, f.expression.value);
      }
    });
  }

  /** One /v1/minimize per optimizer (all rates at once), then the contours and the paths. */
  async compute(optimizers, rates, names) {
    const answers = await Promise.all(optimizers.map((name) => call("POST", "/v1/minimize", this.request(name, rates))));
    const variables = answers[0].variables;
    if (variables.length !== 2 || !names.every((n) => variables.includes(n))) {
      throw new Error(`the expression's variables are ${variables.join(", ")}: name exactly two, as the start point does`);
    }
    this.runs = answers.flatMap((answer) => answer.runs.map((run) => ({
      optimizer: answer.optimizer, rate: run.learning_rate, converged: run.converged, diverged: run.diverged,
      steps: run.steps_taken, value: num(run.value),
      points: run.history.x[names[0]].map((x, i) => [num(x), num(run.history.x[names[1]][i])]),
      step: run.history.step,
    })));
    await this.drawContours(names);
  }

  async drawContours(names) {
    const f = this.form.elements;
    // The region of the runs that stayed finite and bounded; diverged ones are clipped.
    const kept = this.runs.filter((run) => !run.diverged);
    const box = finiteBox((kept.length ? kept : this.runs).flatMap((run) => run.points));
    const xRange = padded(box.x);
    const yRange = padded(box.y);
    const xs = linspace(xRange[0], xRange[1], GRID);
    const ys = linspace(yRange[0], yRange[1], GRID);
    const at = { [names[0]]: [], [names[1]]: [] };
    for (const y of ys) for (const x of xs) { at[names[0]].push(x); at[names[1]].push(y); }
    const grid = await call("POST", "/v1/gradient", { expression: f.expression.value, at });
    const flat = num(grid.value);
    const values = ys.map((_, j) => flat.slice(j * GRID, (j + 1) * GRID));
    const finite = flat.filter(Number.isFinite);
    const low = Math.min(...finite);
    const high = Math.max(...finite);
    // Log-spaced levels for a function spanning decades (narrow valleys stay visible).
    const shift = low <= 0 ? -low + (high - low) * 1e-3 : 0;
    const levels = high + shift > 100 * (low + shift)
      ? linspace(Math.log(low + shift), Math.log(high + shift), 18).map((v) => Math.exp(v) - shift)
      : linspace(low, high, 18);
    const width = Math.min(900, (this.figure.clientWidth || this.root.clientWidth - 24) || 760);
    const plane = new Plane(this.figure, { x: xRange, y: yRange, xLabel: names[0], yLabel: names[1], title: f.expression.value, width, height: Math.round(width * 0.72) });
    plane.contours(xs, ys, values, levels.slice(1, -1), { stroke: "#9aa3b5", width: 1 });
    this.paths = this.runs.map((run, i) => ({ run, color: COLORS[i % COLORS.length], plane }));
    this.plane = plane;
    for (const { run, color } of this.paths) {
      plane.legend(`${run.optimizer}${run.rate === null ? "" : ` lr ${run.rate}`}${run.diverged ? " (diverged)" : ""}`, { stroke: color });
    }
    plane.legend("start", { shape: "circle", stroke: "#000", fill: "#fff" });
    plane.legend("end", { shape: "square", stroke: "#000", fill: "#000" });
    const longest = Math.max(...this.runs.map((run) => run.points.length));
    this.slider.max = String(longest - 1);
    this.slider.value = String(longest - 1);
    this.slider.disabled = false;
    this.play.disabled = false;
    this.step(longest - 1);
    this.table.replaceChildren(el("table", { class: "data" },
      el("thead", {}, el("tr", {}, ["optimizer", "learning rate", "steps", "final value", "final point", "stopped"].map((h) => el("th", {}, h)))),
      el("tbody", {}, this.runs.map((run, i) => {
        const last = run.points[run.points.length - 1];
        return el("tr", {},
          el("td", {}, el("span", { class: "swatch", style: `background:${COLORS[i % COLORS.length]}` }), run.optimizer),
          el("td", {}, run.rate === null ? "–" : String(run.rate)), el("td", {}, String(run.steps)),
          el("td", {}, fmt(run.value, 6)), el("td", {}, `(${fmt(last[0], 5)}, ${fmt(last[1], 5)})`),
          el("td", {}, run.diverged ? "diverged" : run.converged ? "converged" : "step limit"));
      }))));
  }

  /** Draws every path up to history entry `index`, with its start and (current) end marked. */
  step(index) {
    if (!this.plane) return;
    this.plane.layer.querySelectorAll(".plane-path, .plane-marker").forEach((node) => node.remove());
    for (const { run, color } of this.paths) {
      const shown = run.points.slice(0, index + 1);
      this.plane.polyline(shown, { stroke: color, width: 2 });
      const [x0, y0] = run.points[0];
      this.plane.marker(x0, y0, { shape: "circle", fill: "#fff", stroke: "#000", size: 5, title: "start" });
      const end = shown[shown.length - 1];
      this.plane.marker(end[0], end[1], { shape: "square", fill: color, stroke: "#000", size: 4, title: `${run.optimizer} at entry ${shown.length - 1}` });
    }
    this.root.querySelector(".paths-step-label").textContent = `history entry ${index} of ${this.slider.max}`;
  }

  animate() {
    cancelAnimationFrame(this.frame);
    const last = Number(this.slider.max);
    let index = 0;
    const tick = () => {
      this.slider.value = String(index);
      this.step(index);
      index += Math.max(1, Math.round(last / 120));
      if (index <= last) this.frame = requestAnimationFrame(tick);
      else { this.slider.value = String(last); this.step(last); }
    };
    tick();
  }
}
