// The fractal explorer: a Leaflet map over GET /v1/fractal/tiles/{z}/{x}/{y}.png.
//
// Tiles cover the world box [-2.5, 1.5] x [-2, 2] of the complex plane; tile (0, 0, 0) is all of
// it. In Leaflet's CRS.Simple, zoom 0 draws one map unit per pixel, so the world is the square
// [0, 256] in longitude and [-256, 0] in latitude: re = -2.5 + 4 lng / 256, im = 2 + 4 lat / 256.
// Tiles are fetched with the API key in a header (an <img src> could not carry it).

import { authHeaders, call, clearProblem, el, fmt, showProblem } from "./api.js";

const WORLD = { re: -2.5, im: 2, size: 4 };
const TILE = 256;

export function toLatLng(re, im) {
  return L.latLng(((im - WORLD.im) / WORLD.size) * TILE, ((re - WORLD.re) / WORLD.size) * TILE);
}

export function toComplex(latlng) {
  return { re: WORLD.re + (latlng.lng / TILE) * WORLD.size, im: WORLD.im + (latlng.lat / TILE) * WORLD.size };
}

/** The precision the server renders tiles of zoom `z` in (plane.tile_precision: float64 from z 10). */
function tilePrecision(z) {
  const pixel = WORLD.size / TILE / 2 ** z;
  const float32Step = 2 ** -21; // numpy.spacing(float32(4)): float32's step just above |x| = 4
  return pixel >= 64 * float32Step ? "float32" : "float64";
}

const FractalTiles = L.GridLayer.extend({
  createTile(coords, done) {
    const tile = document.createElement("img");
    tile.alt = "";
    tile.setAttribute("role", "presentation");
    const query = new URLSearchParams(this.options.query());
    const url = `/v1/fractal/tiles/${coords.z}/${coords.x}/${coords.y}.png?${query}`;
    fetch(url, { headers: authHeaders() })
      .then((response) => {
        if (!response.ok) throw new Error(`tile ${coords.z}/${coords.x}/${coords.y}: HTTP ${response.status}`);
        return response.blob();
      })
      .then((blob) => {
        tile.onload = () => { URL.revokeObjectURL(tile.src); done(null, tile); };
        tile.src = URL.createObjectURL(blob);
      })
      .catch((error) => done(error, tile));
    return tile;
  },
});

export class FractalView {
  constructor(root) {
    this.root = root;
    this.form = root.querySelector("form");
    this.problem = root.querySelector(".problem-box");
    this.readout = root.querySelector(".fractal-readout");
    this.preview = root.querySelector(".julia-preview");
    this.map = null;
    this.maxZoom = 40;
  }

  settings() {
    const f = this.form.elements;
    const settings = { kind: f.kind.value, colormap: f.colormap.value, smooth: f.smooth.checked ? "true" : "false" };
    if (f.max_iter.value) settings.max_iter = f.max_iter.value;
    if (settings.kind === "julia") Object.assign(settings, { c_re: f.c_re.value, c_im: f.c_im.value });
    return settings;
  }

  show(state = {}) {
    if (!this.map) this.create();
    this.map.invalidateSize();
    if (Object.keys(state).length) this.restore(state);
  }

  hide() {}

  create() {
    this.map = L.map(this.root.querySelector(".fractal-map"), {
      crs: L.CRS.Simple, minZoom: 0, maxZoom: this.maxZoom, zoomSnap: 1, attributionControl: false,
    });
    this.layer = new FractalTiles({
      tileSize: TILE, noWrap: true, bounds: [[-TILE, 0], [0, TILE]], maxZoom: this.maxZoom,
      query: () => this.settings(), keepBuffer: 1,
    });
    this.layer.on("tileerror", (event) => showProblem(this.problem, event.error));
    this.layer.on("tileload", () => clearProblem(this.problem));
    // data-tiles says whether every tile in view has arrived (tests and screenshots wait on it).
    this.layer.on("loading", () => { this.root.dataset.tiles = "loading"; });
    this.layer.on("load", () => { this.root.dataset.tiles = "loaded"; });
    this.map.on("zoomstart movestart", () => { this.root.dataset.tiles = "loading"; });
    this.layer.addTo(this.map);
    this.map.setView(toLatLng(-0.6, 0), 1);
    this.cMarker = L.circleMarker(toLatLng(-0.7269, 0.1889), { radius: 6, color: "#fff", weight: 2, fillColor: "#e4572e", fillOpacity: 1 });
    this.map.on("moveend zoomend", () => this.update());
    this.map.on("click", (event) => this.pick(event.latlng));
    this.form.addEventListener("submit", (event) => event.preventDefault());
    this.form.addEventListener("change", (event) => {
      if (event.target.name === "kind" && event.target.value === "julia") this.map.setView(toLatLng(0, 0), 1);
      this.layer.redraw();
      this.update();
    });
    this.root.querySelector(".explore-julia").addEventListener("click", () => {
      this.form.elements.kind.value = "julia";
      this.form.dispatchEvent(new Event("change"));
      this.map.setView(toLatLng(0, 0), 1);
    });
    this.root.querySelector(".copy-link").addEventListener("click", async () => {
      const link = this.root.querySelector(".permalink").href;
      try { await navigator.clipboard.writeText(link); } catch { /* the link stays visible */ }
    });
    call("GET", "/v1/info").then((info) => {
      this.maxZoom = info.limits?.max_tile_zoom ?? this.maxZoom;
      this.map.setMaxZoom(this.maxZoom);
      this.layer.options.maxZoom = this.maxZoom;
    }).catch(() => {});
    this.update();
  }

  /** A click on the Mandelbrot set picks the Julia constant c. */
  pick(latlng) {
    if (this.form.elements.kind.value !== "mandelbrot") return;
    const { re, im } = toComplex(latlng);
    this.form.elements.c_re.value = re.toPrecision(8);
    this.form.elements.c_im.value = im.toPrecision(8);
    this.cMarker.setLatLng(latlng).addTo(this.map);
    this.root.querySelector(".c-picked").textContent = `c = ${fmt(re, 6)} ${im < 0 ? "−" : "+"} ${fmt(Math.abs(im), 6)}i`;
    this.showPreview(re, im);
    this.update();
  }

  async showPreview(re, im) {
    const query = new URLSearchParams({ width: 240, height: 240, c_re: re, c_im: im, max_iter: 300, colormap: this.form.elements.colormap.value });
    try {
      const blob = await call("GET", `/v1/fractal/julia.png?${query}`, undefined, { as: "blob" });
      const image = this.preview.querySelector("img");
      if (image.src) URL.revokeObjectURL(image.src);
      image.src = URL.createObjectURL(blob);
      this.preview.hidden = false;
    } catch (error) {
      showProblem(this.problem, error);
    }
  }

  state() {
    const center = toComplex(this.map.getCenter());
    const f = this.form.elements;
    const state = { kind: f.kind.value, re: center.re.toPrecision(17), im: center.im.toPrecision(17), z: this.map.getZoom(), colormap: f.colormap.value };
    if (f.max_iter.value) state.max_iter = f.max_iter.value;
    if (!f.smooth.checked) state.smooth = "false";
    if (f.kind.value === "julia" || this.cMarker._map) Object.assign(state, { c_re: f.c_re.value, c_im: f.c_im.value });
    return state;
  }

  restore(state) {
    const f = this.form.elements;
    if (state.kind) f.kind.value = state.kind;
    if (state.colormap) f.colormap.value = state.colormap;
    f.max_iter.value = state.max_iter || "";
    f.smooth.checked = state.smooth !== "false";
    if (state.c_re) f.c_re.value = state.c_re;
    if (state.c_im) f.c_im.value = state.c_im;
    const re = Number(state.re ?? -0.6);
    const im = Number(state.im ?? 0);
    this.map.setView(toLatLng(re, im), Number(state.z ?? 1), { animate: false });
    this.layer.redraw();
    this.update();
  }

  update() {
    if (!this.map) return;
    const z = this.map.getZoom();
    const center = toComplex(this.map.getCenter());
    const bounds = this.map.getBounds();
    const width = (bounds.getEast() - bounds.getWest()) / TILE * WORLD.size;
    const iterations = this.form.elements.max_iter.value || `${256 + 128 * z} (auto)`;
    const precision = tilePrecision(z);
    this.readout.replaceChildren(
      el("span", {}, `zoom ${z}`),
      el("span", {}, `center ${center.re.toPrecision(12)} ${center.im < 0 ? "−" : "+"} ${Math.abs(center.im).toPrecision(12)}i`),
      el("span", {}, `view width ${fmt(width, 3)}`),
      el("span", {}, `max_iter ${iterations}`),
      el("span", { class: `precision precision-${precision}` }, precision === "float64" ? "float64 (deep zoom)" : "float32"));
    const hash = `#fractal?${new URLSearchParams(this.state())}`;
    history.replaceState(null, "", hash);
    this.root.querySelector(".permalink").href = location.href;
  }
}
