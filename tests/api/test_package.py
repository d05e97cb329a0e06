"""The package faces: every module of ``qvd.api`` and ``qvd.cli`` declares ``__all__``
with names it really has, and the faces are sorted."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import qvd.api
import qvd.cli


def _modules(package: object) -> list[str]:
    path = getattr(package, "__path__")  # noqa: B009
    prefix = getattr(package, "__name__") + "."  # noqa: B009
    return [m.name for m in pkgutil.walk_packages(path, prefix) if not m.name.endswith("__main__")]


@pytest.mark.parametrize("name", _modules(qvd.api) + _modules(qvd.cli))
def test_every_module_declares_its_face(name: str) -> None:
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{name} has no __all__"
    missing = [n for n in names if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what it lacks: {missing}"


@pytest.mark.parametrize("package", [qvd.api, qvd.cli])
def test_the_faces_are_sorted(package: object) -> None:
    names = list(getattr(package, "__all__"))  # noqa: B009
    assert names == sorted(names)


def test_the_cli_never_imports_the_database() -> None:
    import subprocess
    import sys

    code = "import sys, qvd.cli.main; print(any(m.startswith('qvd.db') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
