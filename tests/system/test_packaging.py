"""What `pip install labcrunch` puts into site-packages: two import names that cannot clash with a
user's own `client.py` or `service.py`, every subpackage, and the client's `py.typed` marker."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

FOLDERS = {"labcrunch": ROOT / "client", "labcrunch_service": ROOT / "service"}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = out.glob("labcrunch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.mark.slow
def test_wheel_holds_only_the_two_packages(wheel_names: set[str]) -> None:
    top = {name.split("/")[0] for name in wheel_names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"labcrunch", "labcrunch_service"}
    assert "labcrunch/py.typed" in wheel_names


@pytest.mark.slow
def test_wheel_holds_every_subpackage(wheel_names: set[str]) -> None:
    """A folder with an __init__.py that pyproject.toml's package list forgot fails here."""
    for name, folder in FOLDERS.items():
        for init in folder.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            inside = init.relative_to(folder).as_posix()
            assert f"{name}/{inside}" in wheel_names, f"{name}/{inside} is not in the wheel"


@pytest.mark.slow
def test_wheel_holds_the_page_and_the_docs_assets(wheel_names: set[str]) -> None:
    """The page at / and the offline API docs are package data: a wheel without them serves
    blank pages."""
    static = ROOT / "service" / "web" / "static"
    for path in static.rglob("*"):
        if path.is_file():
            name = f"labcrunch_service/web/static/{path.relative_to(static).as_posix()}"
            assert name in wheel_names, f"{name} is not in the wheel"


def test_a_users_own_client_module_does_not_shadow_labcrunch(tmp_path: Path) -> None:
    """The error a new user hit: their own client.py next to the script hid the package."""
    (tmp_path / "client.py").write_text("raise SystemExit('the user module was imported')\n")
    (tmp_path / "service.py").write_text("raise SystemExit('the user module was imported')\n")
    script = "from labcrunch import AsyncClient, Client, __version__; print(__version__)"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, check=True)
    import labcrunch
    import labcrunch_service

    assert done.stdout.strip() == labcrunch.__version__ == labcrunch_service.__version__
