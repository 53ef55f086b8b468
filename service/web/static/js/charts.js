// One-dimensional charts on uPlot: curves with a legend, optional filled bands.

export const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/**
 * A line chart in `container` (its content replaced).
 * @param xs shared x values
 * @param series [{label, values, color, dash, width, points}]
 * @param options {title, xLabel, yLabel, height, bands: [{upper, lower, fill}] (series indexes, 0-based)}
 */
export function lineChart(container, xs, series, { title = "", xLabel = "", yLabel = "", height = 360, bands = [], yRange = null } = {}) {
  container.replaceChildren();
  // The container may be hidden while empty (display: none): measure the box around it.
  const width = Math.max(360, Math.min((container.clientWidth || container.parentElement.clientWidth - 24) || 720, 960));
  const clean = (values) => values.map((v) => (Number.isFinite(v) ? v : null));
  const options = {
    title, width, height,
    scales: { x: { time: false }, y: yRange ? { range: yRange } : {} },
    axes: [{ label: xLabel }, { label: yLabel, size: 60 }],
    series: [{ label: xLabel || "x" }, ...series.map((s, i) => ({
      label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: s.width ?? 2,
      dash: s.dash, points: { show: s.points ?? false }, fill: s.fill,
      show: s.show ?? true,
    }))],
    bands: bands.map((b) => ({ series: [b.upper + 1, b.lower + 1], fill: b.fill })),
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
  };
  const data = [xs, ...series.map((s) => clean(s.values))];
  const chart = new uPlot(options, data, container);
  return chart;
}
