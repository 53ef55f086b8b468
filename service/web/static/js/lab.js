// The function lab: an expression in the service's language, its value and every partial
// derivative over a range of one variable (the others held at given values), from one batched
// POST /v1/gradient. Errors of the language are shown at their line and column.

import { call, clearProblem, el, fmt, linspace, num, parseAssignments, showProblem } from "./api.js";
import { COLORS, lineChart } from "./charts.js";
import { FormView } from "./view.js";

export class LabView extends FormView {
  constructor(root) {
    super(root);
    this.chart = root.querySelector(".lab-chart");
    this.summary = root.querySelector(".lab-summary");
  }

  async run() {
    await super.run();
    const f = this.form.elements;
    const expression = f.expression.value;
    let request;
    try {
      const variable = f.variable.value.trim();
      const low = Number(f.low.value);
      const high = Number(f.high.value);
      const points = Math.round(Number(f.points.value));
      if (!variable) throw new Error("name the variable to sweep");
      if (!(high > low)) throw new Error("the range needs from < to");
      if (!(points >= 2 && points <= 20000)) throw new Error("points: between 2 and 20,000");
      const others = parseAssignments(f.others.value);
      request = { expression, at: { ...others, [variable]: linspace(low, high, points) }, backend: f.backend.value };
    } catch (error) {
      showProblem(this.problem, error);
      return;
    }
    await this.busy(async () => {
      try {
        const answer = await call("POST", "/v1/gradient", request);
        clearProblem(this.problem);
        this.draw(request, answer);
      } catch (error) {
        const position = showProblem(this.problem, error, expression);
        if (position) this.select(f.expression, position);
      }
    });
  }

  /** Puts the editor's cursor on the error's line and column. */
  select(textarea, { line, column }) {
    const lines = textarea.value.split("\n");
    let offset = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    offset += Math.max(0, column - 1);
    textarea.focus();
    textarea.setSelectionRange(offset, Math.min(textarea.value.length, offset + 1));
  }

  draw(request, answer) {
    const variable = this.form.elements.variable.value.trim();
    const xs = request.at[variable];
    const asArray = (values) => (Array.isArray(values) ? values : xs.map(() => values)).map(Number);
    const series = [{ label: `f(${answer.variables.join(", ")})`, values: asArray(num(answer.value)), color: "#111", width: 2.5 }];
    answer.variables.forEach((name, i) => {
      series.push({ label: `∂f/∂${name}`, values: asArray(num(answer.gradient[name])), color: COLORS[i % COLORS.length], dash: name === variable ? undefined : [6, 4] });
    });
    const others = Object.entries(request.at).filter(([name]) => name !== variable).map(([name, value]) => `${name} = ${value}`);
    lineChart(this.chart, xs, series, {
      title: request.expression + (others.length ? `   (${others.join(", ")})` : ""),
      xLabel: variable, yLabel: "value",
    });
    this.summary.replaceChildren(
      el("span", {}, `${xs.length} points, one request`),
      el("span", {}, `backend ${answer.backend}, ${answer.dtype}`),
      el("span", {}, `device ${answer.device}`),
      el("span", {}, `${fmt(answer.elapsed_ms, 3)} ms on the server`));
  }
}
