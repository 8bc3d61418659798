"""The built wheel, installed into a fresh venv, serves its own contract and docs from anywhere.

The wheel is built from a copy of the working tree (nothing is written into the
checkout) and installed from a wheelhouse kept outside it
(``~/.cache/tusd-py-tests/wheelhouse``): the first run fills it from the package
index (and pip's cache), later runs install with ``--no-index`` and need no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser.driver import assert_docs_render, contract_operations, missing_browser_parts, require
from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path.home() / ".cache" / "tusd-py-tests" / "wheelhouse"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]


def offline(**extra: str) -> dict[str, str]:
    return {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE), **extra}


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)  # type: ignore[call-overload]


def copy_tree(destination: Path) -> None:
    """The working tree's tracked and new files (symlinks kept), plus the console's vendor assets."""
    listed = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True).stdout
    names = [name for name in listed.split("\0") if name]
    vendor = REPO / "tusd_py" / "console_ui" / "vendor"
    names += [str(p.relative_to(REPO)) for p in vendor.glob("*")] if vendor.is_dir() else []
    for name in names:
        source = REPO / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def build_wheel(tmp: Path) -> Path:
    source, dist = tmp / "src", tmp / "dist"
    copy_tree(source)
    build = [*PIP, "wheel", "--no-deps", "-w", str(dist), str(source)]
    if run(build, env=offline()).returncode != 0:  # the build backend is not in the wheelhouse yet
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        fetched = run([*PIP, "download", "-d", str(WHEELHOUSE), "setuptools>=77", "wheel"])
        assert fetched.returncode == 0, fetched.stderr
        built = run(build, env=offline())
        assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("tusd_py-*.whl")
    return wheel


def install(wheel: Path, venv: Path) -> None:
    run([sys.executable, "-m", "venv", str(venv)], check=True)
    command = [str(venv / "bin" / "python"), *PIP[1:], "install", str(wheel)]
    if run(command, env=offline()).returncode != 0:  # first run: fill the wheelhouse once
        filled = run([*PIP, "wheel", "-w", str(WHEELHOUSE), str(wheel)])
        assert filled.returncode == 0, filled.stderr
        for ours in WHEELHOUSE.glob("tusd_py-*.whl"):  # dependencies only: ours is rebuilt every run
            ours.unlink()
        installed = run(command, env=offline())
        assert installed.returncode == 0, installed.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp)
    install(wheel, tmp / "venv")
    empty = tmp / "elsewhere"
    empty.mkdir()
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TUSD_PY_", "VIRTUAL_ENV", "PYTHON"))}
    environ.update(TUSD_PY_PORT=str(port), TUSD_PY_ARGON2_PROFILE="fast")
    process = subprocess.Popen(
        [str(tmp / "venv" / "bin" / "tusd-py"), "serve"], cwd=empty, env=environ,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the installed tusd-py serve did not become ready"
            time.sleep(0.1)  # polling a starting server; there is no event to wait on
        yield wheel, base_url
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)


def test_the_wheel_carries_the_contract_as_a_file(installed: tuple[Path, str]) -> None:
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("tusd_py/openapi.yaml") == (REPO / "openapi.yaml").read_bytes()
        names = set(archive.namelist())
    assert {"tusd_py/console_ui/index.html", "tusd_py/console_ui/app.js"} <= names
    assert not any("node_modules" in name or name.endswith("package.json") for name in names)
    vendor = REPO / "tusd_py" / "console_ui" / "vendor" / "uppy.min.mjs"
    if vendor.is_file():  # `make console` ran: a wheel built now ships the console's Uppy
        assert "tusd_py/console_ui/vendor/uppy.min.mjs" in names


def test_installed_wheel_serves_the_repos_contract(installed: tuple[Path, str]) -> None:
    _, base_url = installed
    response = httpx.get(f"{base_url}/openapi.yaml")
    assert response.status_code == 200
    assert response.content == (REPO / "openapi.yaml").read_bytes()


def test_installed_wheel_renders_docs_in_chromium(installed: tuple[Path, str]) -> None:
    require(missing_browser_parts())
    _, base_url = installed
    assert_docs_render(base_url, contract_operations((REPO / "openapi.yaml").read_bytes()))


def test_installed_wheel_serves_the_console(installed: tuple[Path, str]) -> None:
    _, base_url = installed
    page = httpx.get(f"{base_url}/")
    assert page.status_code == 200 and page.headers["x-content-type-options"] == "nosniff"
    if (REPO / "tusd_py" / "console_ui" / "vendor" / "uppy.min.mjs").is_file():
        assert '<script type="module" src="/console/app.js">' in page.text
        assert httpx.get(f"{base_url}/console/app.js").status_code == 200
        assert httpx.get(f"{base_url}/console/vendor/uppy.min.mjs").status_code == 200
    else:
        assert "make console" in page.text
