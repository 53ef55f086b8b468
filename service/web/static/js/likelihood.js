// Likelihood: a pyhf workspace pasted or uploaded; its best fit with uncertainties and
// correlations (POST /v1/pyhf/fit), a two-parameter scan of -2 ln L with the fit's 1σ and 2σ
// ellipses (POST /v1/pyhf/scan), and the CLs curve with its expected band
// (POST /v1/pyhf/upper-limit).

import { call, clearProblem, el, fmt, num, showProblem } from "./api.js";
import { lineChart } from "./charts.js";
import { colorbar, Plane, viridis } from "./plot2d.js";
import { FormView } from "./view.js";

// A one-channel, two-bin search with a shape uncertainty on the background: small enough to fit
// in well under a second, rich enough to show correlations.
export const EXAMPLE_WORKSPACE = {
  version: "1.0.0",
  channels: [{
    name: "signal_region",
    samples: [
      { name: "signal", data: [6.0, 9.0], modifiers: [{ name: "mu", type: "normfactor", data: null }] },
      { name: "background", data: [55.0, 48.0], modifiers: [
        { name: "bkg_norm", type: "normsys", data: { hi: 1.08, lo: 0.92 } },
        { name: "uncorr_bkguncrt", type: "shapesys", data: [5.0, 7.0] }] },
    ],
  }],
  observations: [{ name: "signal_region", data: [62.0, 52.0] }],
  measurements: [{ name: "Measurement", config: { poi: "mu", parameters: [] } }],
};

const SCAN_POINTS = 41;
// pyhf's default bounds of a normfactor POI are [0, 10]: the CLs scan stays inside them.
const POI_CEILING = 10;

/** The request's `model` from what was pasted: a workspace, a {workspace, measurement} model,
 *  or a whole request ({model, data}) such as examples/workspace.json. */
export function modelOf(text) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`The workspace is not valid JSON: ${error.message}`);
  }
  if (parsed && parsed.model) return parsed.model;
  if (parsed && parsed.workspace) return parsed;
  if (parsed && parsed.channels) return { workspace: parsed };
  throw new Error("Paste a pyhf workspace (with channels, observations, measurements) or a request with a model.");
}

/** JSON indented by two spaces, with lists of numbers kept on one line. */
function pretty(value) {
  return JSON.stringify(value, null, 2).replace(/\[[\d\s.,eE+-]*\]/g, (list) => list.replace(/\s+/g, " "));
}

/** The half-widths along x and y of an ellipse with semi-axes (a, b) rotated by angle φ. */
function halfWidths([a, b], angleDeg) {
  const phi = (angleDeg * Math.PI) / 180;
  return [Math.hypot(a * Math.cos(phi), b * Math.sin(phi)), Math.hypot(a * Math.sin(phi), b * Math.cos(phi))];
}

function correlationColor(c) {
  // Blue (-1) through white (0) to red (+1).
  const t = Math.max(-1, Math.min(1, c));
  const [r, g, b] = t >= 0 ? [255, 255 - 180 * t, 255 - 200 * t] : [255 + 200 * t, 255 + 150 * t, 255];
  return `rgb(${Math.round(r)},${Math.round(g)},${Math.round(b)})`;
}

export class LikelihoodView extends FormView {
  constructor(root) {
    super(root);
    this.results = root.querySelector(".likelihood-results");
    const f = this.form.elements;
    f.workspace.value = pretty(EXAMPLE_WORKSPACE);
    f.file.addEventListener("change", async () => {
      const [file] = f.file.files;
      if (!file) return;
      const text = await file.text();
      try {
        f.workspace.value = pretty(JSON.parse(text));
      } catch {
        f.workspace.value = text; // not JSON: shown as it is; Fit says what is wrong
      }
    });
    root.querySelector(".load-example").addEventListener("click", () => {
      f.workspace.value = pretty(EXAMPLE_WORKSPACE);
    });
  }

  async run() {
    await super.run();
    const f = this.form.elements;
    let model;
    try {
      model = modelOf(f.workspace.value);
    } catch (error) {
      return showProblem(this.problem, error);
    }
    const data = f.data.value;
    await this.busy(async () => {
      try {
        const fit = await call("POST", "/v1/pyhf/fit", { model, data });
        clearProblem(this.problem);
        this.results.replaceChildren(...this.fitTables(fit));
        const [scanBox, limitBox] = [el("section", { class: "card wide scan-card" }), el("section", { class: "card wide cls-card" })];
        this.results.append(scanBox, limitBox);
        await Promise.all([this.scan(model, data, fit, scanBox), this.limit(model, data, fit, limitBox)]);
      } catch (error) {
        showProblem(this.problem, error);
      }
    });
  }

  fitTables(fit) {
    const bestfit = num(fit.bestfit);
    const uncertainties = num(fit.uncertainties);
    const table = el("table", { class: "data fit-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "best fit"), el("th", {}, "uncertainty"), el("th", {}, ""))),
      el("tbody", {}, fit.parameters.map((name, i) => el("tr", { class: name === fit.poi ? "poi" : "" },
        el("td", {}, el("code", {}, name)), el("td", { class: "number" }, fmt(bestfit[i], 5)),
        el("td", { class: "number" }, fit.fixed.includes(name) ? "fixed" : `± ${fmt(uncertainties[i], 3)}`),
        el("td", {}, name === fit.poi ? "POI" : "")))));
    const summary = el("p", { class: "muted" },
      `−2 ln L = ${fmt(num(fit.twice_nll), 7)} · ${fit.converged ? "converged" : "NOT converged"} · optimizer ${fit.optimizer} · ${fmt(fit.elapsed_ms, 3)} ms on ${fit.device}`);
    const warnings = fit.warnings.map((w) => el("p", { class: "warning" }, w));
    const names = fit.free_parameters;
    const correlation = num(fit.correlation);
    const matrix = el("table", { class: "correlation" },
      el("thead", {}, el("tr", {}, el("th", {}), names.map((n) => el("th", { class: "rotated" }, el("span", {}, n))))),
      el("tbody", {}, names.map((row, i) => el("tr", {}, el("th", {}, row),
        names.map((_, j) => el("td", { style: `background:${correlationColor(correlation[i][j])}`, title: `${row} × ${names[j]}` }, correlation[i][j].toFixed(2)))))));
    return [
      el("section", { class: "card" }, el("h3", {}, "Best fit"), summary, ...warnings, table),
      el("section", { class: "card" }, el("h3", {}, "Correlation matrix"), matrix),
    ];
  }

  async scan(model, data, fit, box) {
    // The POI against the free parameter it correlates with most, over a range that holds the
    // fit's largest ellipse of that pair with room around it.
    const names = fit.free_parameters;
    const poi = fit.poi && names.includes(fit.poi) ? fit.poi : names[0];
    const i = names.indexOf(poi);
    const correlation = num(fit.correlation);
    const candidates = fit.ellipses.filter((e) => e.parameters[0] === poi);
    let partner = candidates.map((e) => e.parameters[1])
      .sort((a, b) => Math.abs(correlation[i][names.indexOf(b)]) - Math.abs(correlation[i][names.indexOf(a)]))[0];
    if (!partner) partner = names.find((n) => n !== poi);
    if (!partner) {
      box.replaceChildren(el("h3", {}, "Likelihood scan"), el("p", {}, "The model has one free parameter: nothing to scan in two dimensions."));
      return;
    }
    const ellipses = fit.ellipses.filter((e) => e.parameters[0] === poi && e.parameters[1] === partner);
    const bestfit = num(fit.bestfit);
    const sigma = num(fit.uncertainties);
    const center = [bestfit[fit.parameters.indexOf(poi)], bestfit[fit.parameters.indexOf(partner)]];
    let reach = [3 * sigma[fit.parameters.indexOf(poi)], 3 * sigma[fit.parameters.indexOf(partner)]];
    for (const e of ellipses) {
      const [hx, hy] = halfWidths(num(e.semi_axes), num(e.angle_deg));
      if (Number.isFinite(hx) && Number.isFinite(hy)) reach = [Math.max(reach[0], 1.4 * hx), Math.max(reach[1], 1.4 * hy)];
    }
    const axis = (name, c, r) => ({ name, low: c - r, high: c + r, points: SCAN_POINTS });
    const scan = await call("POST", "/v1/pyhf/scan", {
      model, data, x: axis(poi, center[0], reach[0]), y: axis(partner, center[1], reach[1]),
      quantity: "twice_nll", gradient_points: [2, 2],
    });
    const xs = num(scan.x);
    const ys = num(scan.y);
    const reference = num(fit.twice_nll);
    const delta = num(scan.values).map((row) => row.map((v) => v - reference));
    const top = 12;
    box.replaceChildren(el("h3", {}, `Likelihood scan: ${poi} × ${partner}`));
    const figure = el("div", { class: "figure" });
    box.append(figure);
    const width = Math.min(760, box.clientWidth || 700);
    const plane = new Plane(figure, { x: [xs[0], xs[xs.length - 1]], y: [ys[0], ys[ys.length - 1]], xLabel: poi, yLabel: partner, title: "Δ(−2 ln L) around the best fit", width, height: Math.round(width * 0.75) });
    plane.heatmap(xs, ys, delta, (v) => (Number.isFinite(v) ? viridis(Math.min(v, top) / top) : null));
    const styles = [{ stroke: "#ffffff", width: 2.5 }, { stroke: "#ff4f4f", width: 2.5 }];
    ellipses.sort((a, b) => a.confidence_level - b.confidence_level).forEach((e, k) => {
      const style = styles[Math.min(k, styles.length - 1)];
      plane.ellipse(num(e.center), num(e.semi_axes), num(e.angle_deg), style);
      const sigmaLabel = Math.abs(e.confidence_level - 0.6827) < 1e-3 ? "1σ" : Math.abs(e.confidence_level - 0.9545) < 1e-3 ? "2σ" : `${fmt(100 * e.confidence_level, 4)} %`;
      plane.legend(`${sigmaLabel} ellipse (${fmt(100 * e.confidence_level, 4)} %, Δχ² = ${fmt(num(e.delta_chi2), 3)})`, { ...style, dark: true });
      plane.contours(xs, ys, delta, [num(e.delta_chi2)], { ...style, width: 1.5, dash: "5 4" });
    });
    // The ellipses come from the covariance (the other parameters profiled); the scan holds them
    // at their best fit, so its contours are the conditional ones and lie inside.
    if (ellipses.length) plane.legend("scan at the same Δχ², other parameters at their best fit", { stroke: "#fff", dash: "5 4", dark: true });
    plane.marker(center[0], center[1], { shape: "star", fill: "#ffd400", stroke: "#000", size: 7, title: "best fit" });
    plane.legend("best fit", { shape: "star", fill: "#ffd400", stroke: "#000" });
    colorbar(figure, "Δ(−2 ln L)", 0, top);
  }

  async limit(model, data, fit, box) {
    const iPoi = fit.parameters.indexOf(fit.poi);
    if (iPoi < 0) {
      box.replaceChildren(el("h3", {}, "CLs"), el("p", {}, "The model has no parameter of interest."));
      return;
    }
    const muHat = Math.max(0, num(fit.bestfit)[iPoi]);
    const sigma = num(fit.uncertainties)[iPoi];
    const stop = Math.min(POI_CEILING, Math.max(1, muHat + 5 * (Number.isFinite(sigma) ? sigma : 1)));
    const limit = await call("POST", "/v1/pyhf/upper-limit", { model, data, scan: { start: 0, stop, points: 41 } });
    const scan = num(limit.scan);
    const band = num(limit.cls_expected);
    const column = (k) => band.map((row) => row[k]);
    const expected = num(limit.expected);
    box.replaceChildren(el("h3", {}, `CLs for ${limit.poi}`),
      el("p", { class: "limits" },
        el("span", {}, "observed limit ", el("strong", { class: "observed-limit" }, fmt(num(limit.observed), 4))),
        el("span", {}, `expected ${fmt(expected[2], 4)} (−1σ ${fmt(expected[1], 3)}, +1σ ${fmt(expected[3], 3)}; −2σ ${fmt(expected[0], 3)}, +2σ ${fmt(expected[4], 3)})`),
        el("span", {}, `at CLs = ${limit.level}`)),
      ...limit.warnings.map((w) => el("p", { class: "warning" }, w)));
    const chart = el("div", { class: "cls-chart" });
    box.append(chart);
    lineChart(chart, scan, [
      { label: "expected +2σ", values: column(4), color: "#f2d600", width: 1 },
      { label: "expected −2σ", values: column(0), color: "#f2d600", width: 1 },
      { label: "expected +1σ", values: column(3), color: "#3cb44b", width: 1 },
      { label: "expected −1σ", values: column(1), color: "#3cb44b", width: 1 },
      { label: "expected", values: column(2), color: "#000", dash: [6, 4], width: 1.5 },
      { label: "observed", values: num(limit.cls), color: "#000", width: 2, points: true },
      { label: `CLs = ${limit.level}`, values: scan.map(() => limit.level), color: "#d62728", width: 1.5 },
    ], {
      title: `CLs scan of ${limit.poi}`, xLabel: limit.poi, yLabel: "CLs", height: 340, yRange: [0, 1],
      bands: [{ upper: 0, lower: 1, fill: "rgba(242, 214, 0, 0.55)" }, { upper: 2, lower: 3, fill: "rgba(60, 180, 75, 0.6)" }],
    });
  }
}
