"""Real headless Chromium (Debian's package) driven by puppeteer-core under Node.

Nothing here downloads a browser. Without Chromium, Node or puppeteer-core the
tests skip with one line saying what is missing; with ``CI=true`` that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).parent
JS_MODULES = HERE.parent / "js" / "node_modules"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def missing_browser_parts() -> list[str]:
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    if shutil.which("node") is None:
        missing.append("node")
    if not (JS_MODULES / "puppeteer-core").is_dir():
        missing.append("puppeteer-core (make js-clients)")
    return missing


def require(missing: list[str], what: str = "browser tests") -> None:
    """Skip with one line naming what is missing; with ``CI=true``, fail instead."""
    if not missing:
        return
    message = f"{what} need " + ", ".join(missing)
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: a missing part is a failure)", pytrace=False)
    pytest.skip(message)


def run_scenario(script: str, *args: str, timeout: float = 150) -> dict:
    """Run one tests/browser/*.cjs scenario; its last stdout line is its JSON answer."""
    result = subprocess.run(
        ["node", str(HERE / script), *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "CHROMIUM": CHROMIUM},
    )  # fmt: skip
    assert result.returncode == 0, f"{script} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def contract_operations(document: bytes) -> list[str]:
    paths = yaml.safe_load(document)["paths"]
    return sorted(f"{method} {path}" for path, item in paths.items() for method in item if method in METHODS)


def assert_docs_render(base_url: str, expected: list[str]) -> None:
    """The /docs page shows exactly the contract's operations (repo and wheel tests)."""
    page = run_scenario("docs.cjs", base_url)
    assert page["status"] == 200
    assert page["unableToRender"] is False
    assert sorted(page["operations"]) == expected
    assert page["title"] and "tusd-py" in page["title"]
    assert page["errors"] == []
    assert "frame-ancestors 'none'" in page["headers"]["content-security-policy"]
    assert page["headers"]["x-content-type-options"] == "nosniff"
