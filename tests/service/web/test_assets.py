"""The browser side as served: the page, the docs pages and their assets, all from the package,
none from a CDN, with the vendored libraries exactly those web/package-lock.json pins."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from labcrunch_service.web.router import STATIC
from tests.conftest import serving
from tests.helpers import ROOT

VENDOR = STATIC / "vendor"
MANIFEST = json.loads((VENDOR / "manifest.json").read_text())
LOCK = json.loads((ROOT / "web" / "package-lock.json").read_text())


def test_vendored_files_are_the_locked_versions_unchanged():
    """`make web` copies them; a hand edit or a lock bump without `make web` fails here."""
    wanted = json.loads((ROOT / "web" / "package.json").read_text())["dependencies"]
    assert set(MANIFEST) == set(wanted)
    for package, entry in MANIFEST.items():
        assert entry["version"] == LOCK["packages"][f"node_modules/{package}"]["version"], package
        for name, digest in entry["files"].items():
            data = (VENDOR / package / name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == digest, f"{package}/{name}"
    served = {p.relative_to(VENDOR).as_posix() for p in VENDOR.rglob("*") if p.is_file()}
    listed = {f"{package}/{name}" for package, entry in MANIFEST.items() for name in entry["files"]}
    assert served - {"manifest.json"} == listed


def test_the_page_and_its_scripts_load_nothing_from_elsewhere():
    for path in [STATIC / "index.html", STATIC / "style.css", *sorted((STATIC / "js").glob("*.js"))]:
        text = path.read_text()
        assert not re.search(r"""(src|href)=["']https?://""", text), path.name
        assert not re.search(r"""(fetch|import)\(?\s*["'`]https?://""", text), path.name
        assert "console.log" not in text, path.name  # nothing (an API key least of all) is logged


def test_page_docs_and_assets_are_served_with_a_same_origin_policy(api):
    for path in ("/", "/docs", "/redoc"):
        response = api.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy
        assert "https://" not in response.text
    page = api.get("/").text
    for asset in re.findall(r"""(?:src|href)="(/static/[^"]+)\"""", page):
        assert api.get(asset).status_code == 200, asset
    assert api.get("/static/vendor/leaflet/images/marker-icon.png").headers["content-type"] == "image/png"
    assert api.get("/static/nothing-here.js").status_code == 404


@pytest.mark.parametrize("public_docs", [True, False])
def test_the_page_is_open_and_its_api_calls_need_the_key(public_docs):
    with serving(api_keys={"alice": "k1"}, public_docs=public_docs) as client:
        assert client.get("/").status_code == 200
        assert client.get("/static/js/main.js").status_code == 200
        assert client.get("/v1/info").status_code == 401
        assert client.get("/v1/info", headers={"Authorization": "Bearer k1"}).status_code == 200
        assert client.get("/docs").status_code == (200 if public_docs else 401)


def test_web_routes_stay_out_of_the_openapi_document(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert not {"/", "/docs", "/redoc", "/favicon.ico"} & set(paths)
    assert not any(p.startswith("/static") for p in paths)
