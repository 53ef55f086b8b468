// A small SVG figure for two-dimensional pictures: axes with ticks and labels, a heatmap,
// contour lines (d3-contour), paths, markers, ellipses and a legend. One-dimensional curves use
// uPlot (see charts.js); this draws what uPlot does not: planes.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (parent) parent.append(node);
  return node;
}

/** About `count` round tick values covering [low, high]. */
export function ticks(low, high, count = 6) {
  if (!(high > low)) return [low];
  const raw = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const first = Math.ceil(low / step - 1e-9) * step;
  const values = [];
  for (let v = first; v <= high + step * 1e-9; v += step) values.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return values;
}

function tickLabel(value) {
  return Math.abs(value) >= 1e4 || (Math.abs(value) < 1e-3 && value !== 0)
    ? value.toExponential(1) : String(Number(value.toPrecision(6)));
}

// matplotlib's viridis at 9 stops, interpolated linearly.
const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

export function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}

export class Plane {
  /**
   * @param container element the figure replaces the content of
   * @param options {x: [min, max], y: [min, max], xLabel, yLabel, title, width, height}
   */
  constructor(container, { x, y, xLabel = "x", yLabel = "y", title = "", width = 640, height = 480 }) {
    this.x = x;
    this.y = y;
    this.margin = { left: 64, right: 16, top: title ? 32 : 12, bottom: 48 };
    this.width = width;
    this.height = height;
    this.legendItems = [];
    container.replaceChildren();
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "plane", role: "img" }, container);
    this.root = root;
    const id = `clip-${Math.random().toString(36).slice(2)}`;
    const m = this.margin;
    svg("rect", { x: m.left, y: m.top, width: width - m.left - m.right, height: height - m.top - m.bottom }, svg("clipPath", { id }, svg("defs", {}, root)));
    this.frame = svg("rect", { x: m.left, y: m.top, width: width - m.left - m.right, height: height - m.top - m.bottom, class: "plane-frame" }, root);
    this.layer = svg("g", { "clip-path": `url(#${id})` }, root);
    this.axes(xLabel, yLabel, title);
    this.legendBox = document.createElement("div");
    this.legendBox.className = "legend";
    container.append(this.legendBox);
  }

  px(x) {
    const m = this.margin;
    return m.left + ((x - this.x[0]) / (this.x[1] - this.x[0])) * (this.width - m.left - m.right);
  }

  py(y) {
    const m = this.margin;
    return this.height - m.bottom - ((y - this.y[0]) / (this.y[1] - this.y[0])) * (this.height - m.top - m.bottom);
  }

  axes(xLabel, yLabel, title) {
    const m = this.margin;
    const g = svg("g", { class: "plane-axes" }, this.root);
    for (const v of ticks(this.x[0], this.x[1])) {
      const X = this.px(v);
      svg("line", { x1: X, x2: X, y1: this.height - m.bottom, y2: this.height - m.bottom + 5 }, g);
      svg("text", { x: X, y: this.height - m.bottom + 18, "text-anchor": "middle" }, g).textContent = tickLabel(v);
    }
    for (const v of ticks(this.y[0], this.y[1])) {
      const Y = this.py(v);
      svg("line", { x1: m.left - 5, x2: m.left, y1: Y, y2: Y }, g);
      svg("text", { x: m.left - 8, y: Y + 4, "text-anchor": "end" }, g).textContent = tickLabel(v);
    }
    svg("text", { x: (m.left + this.width - m.right) / 2, y: this.height - 8, "text-anchor": "middle", class: "plane-label" }, g).textContent = xLabel;
    svg("text", { x: 14, y: (m.top + this.height - m.bottom) / 2, "text-anchor": "middle", class: "plane-label", transform: `rotate(-90 14 ${(m.top + this.height - m.bottom) / 2})` }, g).textContent = yLabel;
    if (title) svg("text", { x: (m.left + this.width - m.right) / 2, y: 20, "text-anchor": "middle", class: "plane-title" }, g).textContent = title;
  }

  /** values[j][i] at (xs[i], ys[j]) as colours: `color(value)` gives [r, g, b] (null: transparent). */
  heatmap(xs, ys, values, color) {
    const canvas = document.createElement("canvas");
    canvas.width = xs.length;
    canvas.height = ys.length;
    const context = canvas.getContext("2d");
    const image = context.createImageData(xs.length, ys.length);
    for (let j = 0; j < ys.length; j++) {
      for (let i = 0; i < xs.length; i++) {
        const rgb = color(values[j][i]);
        const k = 4 * ((ys.length - 1 - j) * xs.length + i); // row 0 of the image is the top
        if (rgb) [image.data[k], image.data[k + 1], image.data[k + 2], image.data[k + 3]] = [...rgb, 255];
      }
    }
    context.putImageData(image, 0, 0);
    const dx = (xs[xs.length - 1] - xs[0]) / Math.max(1, xs.length - 1);
    const dy = (ys[ys.length - 1] - ys[0]) / Math.max(1, ys.length - 1);
    const left = this.px(xs[0] - dx / 2);
    const top = this.py(ys[ys.length - 1] + dy / 2);
    svg("image", {
      href: canvas.toDataURL(), x: left, y: top, width: this.px(xs[xs.length - 1] + dx / 2) - left,
      height: this.py(ys[0] - dy / 2) - top, preserveAspectRatio: "none", class: "plane-heatmap",
    }, this.layer);
  }

  /** Contour lines of values[j][i] at (xs[i], ys[j]) for each threshold; returns the <path>s. */
  contours(xs, ys, values, thresholds, style = {}) {
    const flat = new Float64Array(xs.length * ys.length);
    // Where the function is undefined (NaN) no level line is drawn: count it as above every level.
    for (let j = 0; j < ys.length; j++) {
      for (let i = 0; i < xs.length; i++) {
        const v = values[j][i];
        flat[j * xs.length + i] = Number.isNaN(v) ? Infinity : v;
      }
    }
    const dx = (xs[xs.length - 1] - xs[0]) / (xs.length - 1);
    const dy = (ys[ys.length - 1] - ys[0]) / (ys.length - 1);
    // d3-contour puts sample (i, j) at (i + 0.5, j + 0.5) and closes rings along the border.
    const X = (gx) => this.px(xs[0] + (gx - 0.5) * dx);
    const Y = (gy) => this.py(ys[0] + (gy - 0.5) * dy);
    const generator = d3.contours().size([xs.length, ys.length]).thresholds(thresholds);
    const paths = [];
    for (const geometry of generator(flat)) {
      let d = "";
      for (const polygon of geometry.coordinates) {
        for (const ring of polygon) {
          // Drop the segments d3 adds along the grid's border: they are not level lines.
          let pen = false;
          for (const [gx, gy] of ring) {
            const onBorder = gx <= 0 || gy <= 0 || gx >= xs.length || gy >= ys.length;
            if (onBorder) { pen = false; continue; }
            d += `${pen ? "L" : "M"}${X(gx).toFixed(2)},${Y(gy).toFixed(2)}`;
            pen = true;
          }
        }
      }
      const color = typeof style.stroke === "function" ? style.stroke(geometry.value) : (style.stroke || "#555");
      const path = svg("path", { d, fill: "none", stroke: color, "stroke-width": style.width || 1, class: "plane-contour", "data-level": geometry.value }, this.layer);
      if (style.dash) path.setAttribute("stroke-dasharray", style.dash);
      paths.push(path);
    }
    return paths;
  }

  /** A polyline through [[x, y], ...] (non-finite points break it). */
  polyline(points, { stroke = "#000", width = 1.5, dash = null, className = "plane-path" } = {}) {
    let d = "";
    let pen = false;
    for (const [x, y] of points) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${this.px(x).toFixed(2)},${this.py(y).toFixed(2)}`;
      pen = true;
    }
    const path = svg("path", { d, fill: "none", stroke, "stroke-width": width, class: className, "stroke-linejoin": "round" }, this.layer);
    if (dash) path.setAttribute("stroke-dasharray", dash);
    return path;
  }

  /** A marker: "circle" (start), "square" (end), "cross", "star" at (x, y). */
  marker(x, y, { shape = "circle", fill = "#fff", stroke = "#000", size = 5, title = "" } = {}) {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return null;
    const X = this.px(x);
    const Y = this.py(y);
    let node;
    if (shape === "square") node = svg("rect", { x: X - size, y: Y - size, width: 2 * size, height: 2 * size }, this.layer);
    else if (shape === "cross") node = svg("path", { d: `M${X - size},${Y - size}L${X + size},${Y + size}M${X - size},${Y + size}L${X + size},${Y - size}`, "stroke-width": 2 }, this.layer);
    else if (shape === "star") {
      const points = Array.from({ length: 10 }, (_, k) => {
        const r = k % 2 ? size * 0.45 : size * 1.2;
        const a = (Math.PI / 5) * k - Math.PI / 2;
        return `${(X + r * Math.cos(a)).toFixed(2)},${(Y + r * Math.sin(a)).toFixed(2)}`;
      });
      node = svg("polygon", { points: points.join(" ") }, this.layer);
    } else node = svg("circle", { cx: X, cy: Y, r: size }, this.layer);
    node.setAttribute("fill", shape === "cross" ? "none" : fill);
    node.setAttribute("stroke", stroke);
    node.setAttribute("class", `plane-marker plane-marker-${shape}`);
    if (title) svg("title", {}, node).textContent = title;
    return node;
  }

  /** An ellipse in data coordinates: center, semi-axes (major, minor), major axis angle (degrees). */
  ellipse(center, semiAxes, angleDeg, style = {}) {
    const phi = (angleDeg * Math.PI) / 180;
    const points = Array.from({ length: 181 }, (_, k) => {
      const t = (2 * Math.PI * k) / 180;
      const a = semiAxes[0] * Math.cos(t);
      const b = semiAxes[1] * Math.sin(t);
      return [center[0] + a * Math.cos(phi) - b * Math.sin(phi), center[1] + a * Math.sin(phi) + b * Math.cos(phi)];
    });
    return this.polyline(points, { className: "plane-ellipse", ...style });
  }

  /** Adds a legend entry: a swatch in `stroke` (dashed when `dash`) or a marker shape, and text. */
  legend(text, { stroke = "#000", dash = null, shape = null, fill = "#fff", dark = false } = {}) {
    const item = document.createElement("span");
    item.className = "legend-item";
    const swatch = document.createElementNS(SVG, "svg");
    swatch.setAttribute("viewBox", "0 0 24 12");
    swatch.setAttribute("class", dark ? "legend-swatch dark" : "legend-swatch");
    if (shape === "circle") svg("circle", { cx: 12, cy: 6, r: 4, fill, stroke }, swatch);
    else if (shape === "square") svg("rect", { x: 8, y: 2, width: 8, height: 8, fill, stroke }, swatch);
    else if (shape === "star") svg("polygon", { points: "12,1 13.5,4.8 17.5,5 14.3,7.4 15.5,11 12,9 8.5,11 9.7,7.4 6.5,5 10.5,4.8", fill, stroke }, swatch);
    else {
      const line = svg("line", { x1: 1, x2: 23, y1: 6, y2: 6, stroke, "stroke-width": 2.5 }, swatch);
      if (dash) line.setAttribute("stroke-dasharray", dash);
    }
    item.append(swatch, document.createTextNode(text));
    this.legendBox.append(item);
    return item;
  }
}

/** A horizontal colour bar for `color(t)`, t in [0, 1], labelled from `low` to `high`. */
export function colorbar(container, label, low, high, color = viridis) {
  const canvas = document.createElement("canvas");
  canvas.width = 256;
  canvas.height = 1;
  const context = canvas.getContext("2d");
  for (let i = 0; i < 256; i++) {
    const [r, g, b] = color(i / 255);
    context.fillStyle = `rgb(${r},${g},${b})`;
    context.fillRect(i, 0, 1, 1);
  }
  const bar = document.createElement("div");
  bar.className = "colorbar";
  const image = document.createElement("img");
  image.src = canvas.toDataURL();
  image.alt = label;
  const low_ = document.createElement("span");
  low_.textContent = tickLabel(low);
  const high_ = document.createElement("span");
  high_.textContent = tickLabel(high);
  const text = document.createElement("span");
  text.className = "colorbar-label";
  text.textContent = label;
  bar.append(low_, image, high_, text);
  container.append(bar);
  return bar;
}
