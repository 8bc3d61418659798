"""Fixtures of the browser tests: each skips (fails with ``CI=true``) when a part is missing."""

from __future__ import annotations

import pytest

from tests.browser.driver import missing_browser_parts, require


@pytest.fixture(scope="session")
def browser_ready() -> None:
    require(missing_browser_parts())


@pytest.fixture(scope="session")
def console_ready(browser_ready: None) -> None:
    """The console's Uppy build, copied from npm by ``make console`` (``make test`` runs it)."""
    from tusd_py.console import assets_installed

    require(
        [] if assets_installed() else ["its Uppy assets (make console, which needs npm)"], "console tests"
    )
