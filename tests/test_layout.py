"""The tests' own layout: every folder a package, and no test module importing another.

Shared fixtures live in tests/conftest.py and shared plain helpers in tests/helpers/; a test module
that imports another collects (and may run) that module's tests twice and ties the two together.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def modules_of_tests() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def imported_test_modules(path: Path) -> list[str]:
    """The ``test_*`` modules that ``path`` imports (absolute or relative, as a module or a name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            modules = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [m for m in modules if any(part.startswith("test_") for part in m.split("."))]
    return found


def test_no_test_module_imports_another():
    offenders = {str(path.relative_to(TESTS)): imported for path in modules_of_tests()
                 if (imported := imported_test_modules(path))}
    assert offenders == {}, "move what they share to tests/conftest.py or tests/helpers/"


def test_every_test_folder_is_a_package():
    """Without __init__.py two test modules with the same name in different folders clash."""
    folders = {path.parent for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts}
    missing = sorted(str(f.relative_to(TESTS.parent)) for f in folders if not (f / "__init__.py").exists())
    assert missing == []


def test_the_checks_see_what_they_check(tmp_path):
    """The import check finds each spelling of an import of a test module, and only those."""
    (tmp_path / "test_probe.py").write_text(
        "import tests.service.test_cache\n"
        "from tests.client.test_fit import x\n"
        "from tests.client import test_gradient\n"
        "from .test_sweep import y\n"
        "from tests.helpers.fit_data import seed_data\n"
        "import pytest\n"
    )
    assert imported_test_modules(tmp_path / "test_probe.py") == [
        "tests.service.test_cache",
        "tests.client.test_fit", "tests.client.test_fit.x",
        "tests.client.test_gradient",
        ".test_sweep", ".test_sweep.y",
    ]
    assert len(modules_of_tests()) > 30
