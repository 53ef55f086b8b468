// Copies the browser files labcrunch serves from node_modules (installed by `npm ci` from
// package-lock.json) into service/web/static/vendor/, and writes manifest.json there: each
// package's version and each file's SHA-256. tests/service/web/test_assets.py checks the
// manifest against package-lock.json and the files against the manifest.
// Run through `make web`.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "..", "service", "web", "static", "vendor");

// package -> files to copy (paths inside the package; a trailing "/" copies a folder's files).
const FILES = {
  "swagger-ui-dist": ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"],
  "redoc": ["bundles/redoc.standalone.js", "LICENSE"],
  "leaflet": ["dist/leaflet.js", "dist/leaflet.css", "dist/images/", "LICENSE"],
  "uplot": ["dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE"],
  "d3-array": ["dist/d3-array.min.js", "LICENSE"],
  "d3-contour": ["dist/d3-contour.min.js", "LICENSE"],
};

const sha256 = (path) => createHash("sha256").update(readFileSync(path)).digest("hex");

rmSync(target, { recursive: true, force: true });
const manifest = {};
for (const [name, files] of Object.entries(FILES)) {
  const source = join(here, "node_modules", name);
  const { version } = JSON.parse(readFileSync(join(source, "package.json"), "utf8"));
  const copied = {};
  const copy = (relative, into) => {
    mkdirSync(join(target, name, into), { recursive: true });
    const base = relative.split("/").pop();
    copyFileSync(join(source, relative), join(target, name, into, base));
    copied[into ? `${into}/${base}` : base] = sha256(join(source, relative));
  };
  for (const file of files) {
    if (file.endsWith("/")) {
      const into = file.slice(0, -1).split("/").pop();
      for (const entry of readdirSync(join(source, file)).sort()) copy(file + entry, into);
    } else {
      copy(file, "");
    }
  }
  manifest[name] = { version, files: copied };
}
writeFileSync(join(target, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`vendored ${Object.keys(manifest).length} packages into ${target}`);
