"""The one place that knows where the packaged data lives: the spec, the default fixtures, the page.

In the repository they stay at the root (`spec/`, `fixtures/`); pyproject.toml maps those
directories into the package as `mockserver.spec` and `mockserver.fixtures`, so an installed
wheel and an editable install (what make uses) both find them through `importlib.resources`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _directory(package: str) -> Path:
    """The package's directory on disk: the loaders read real files (a zipped install is not supported)."""
    try:
        root = resources.files(package)
    except ModuleNotFoundError:  # a bare checkout on sys.path: the mapping exists only once installed
        raise RuntimeError(f"{package} not found: install the package first (make, or pip install -e .)") from None
    if not isinstance(root, Path):
        raise RuntimeError(f"{package} is not installed as files on disk ({root!r}); reinstall without zipping")
    return root


SPEC_DIR = _directory("mockserver.spec")
FIXTURES_DIR = _directory("mockserver.fixtures")
UI_DIR = _directory("mockserver.ui")  # the playground page (GET /__mock__/ui)

WALDUR_SPEC = SPEC_DIR / "waldur-chat-8.0.5.yaml"
CONTROL_SPEC = SPEC_DIR / "mock-control.yaml"
USERS_FILE = FIXTURES_DIR / "users.yaml"
RESOURCES_FILE = FIXTURES_DIR / "resources.yaml"
SCRIPT_DIR = FIXTURES_DIR / "scripts"
SCRIPT_DIR_8_1 = FIXTURES_DIR / "scripts_8_1"  # the 8.1 profile's defaults (its new record kinds)
SEED_FILE = FIXTURES_DIR / "seed.yaml"
