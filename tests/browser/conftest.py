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

HERE = Path(__file__).parent
JS_MODULES = HERE.parent / "js" / "node_modules"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def missing_browser_parts() -> list[str]:
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    if shutil.which("node") is None:
        missing.append("node")
    if not (JS_MODULES / "puppeteer-core").is_dir():
        missing.append("puppeteer-core (make js-clients)")
    return missing


@pytest.fixture(scope="session")
def browser_ready() -> None:
    missing = missing_browser_parts()
    if missing:
        message = "browser tests need " + ", ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: a missing browser is a failure)", pytrace=False)
        pytest.skip(message)


def run_scenario(script: str, *args: str, timeout: float = 150) -> dict:
    """Run one tests/browser/*.cjs scenario; its last stdout line is its JSON answer."""
    result = subprocess.run(
        ["node", str(HERE / script), *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "CHROMIUM": CHROMIUM},
    )  # fmt: skip
    assert result.returncode == 0, f"{script} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def console_ready(browser_ready: None) -> None:
    """The console's Uppy build, copied from npm by ``make console`` (``make test`` runs it)."""
    from tusd_py.console import assets_installed

    if not assets_installed():
        message = "console tests need its Uppy assets (make console, which needs npm)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: missing npm assets are a failure)", pytrace=False)
        pytest.skip(message)
