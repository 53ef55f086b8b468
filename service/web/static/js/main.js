// The page's frame: the API key field, the tabs, and the URL hash that names the view (and, for
// the fractal explorer, its permalink state: #fractal?kind=…&re=…&im=…&z=…).

import { apiKey, setApiKey } from "./api.js";
import { FractalView } from "./fractal.js";
import { LabView } from "./lab.js";
import { LikelihoodView } from "./likelihood.js";
import { PathsView } from "./paths.js";
import { StatusView } from "./status.js";

const views = {
  status: new StatusView(document.getElementById("status")),
  fractal: new FractalView(document.getElementById("fractal")),
  lab: new LabView(document.getElementById("lab")),
  paths: new PathsView(document.getElementById("paths")),
  likelihood: new LikelihoodView(document.getElementById("likelihood")),
};
let current = null;

function route() {
  const [name, query] = location.hash.replace(/^#/, "").split("?");
  const view = name in views ? name : "status";
  const state = Object.fromEntries(new URLSearchParams(query || ""));
  if (current !== view) {
    if (current) views[current].hide();
    for (const [key, section] of Object.entries(views)) section.root.hidden = key !== view;
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === view));
    current = view;
  }
  views[view].show(state);
}

const keyField = document.getElementById("api-key");
keyField.value = apiKey();
keyField.addEventListener("change", () => {
  setApiKey(keyField.value.trim());
  route();
});
document.getElementById("forget-key").addEventListener("click", () => {
  keyField.value = "";
  setApiKey("");
  route();
});
window.addEventListener("hashchange", () => {
  // The fractal view rewrites its own hash as the map moves; only a change of view re-routes.
  const name = location.hash.replace(/^#/, "").split("?")[0] || "status";
  if (name !== current) route();
});
route();
