"""``make screenshots``: start ``tusd-py serve`` in a temp dir and photograph the console and /docs.

Writes small PNGs into the directory given (``docs/``); the test suite never runs this.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.browser.driver import missing_browser_parts, run_scenario
from tests.support import free_port


def main(out: Path) -> int:
    missing = missing_browser_parts()
    if missing:
        print("make screenshots needs " + ", ".join(missing), file=sys.stderr)
        return 1
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tusd-py-screenshots-") as tmp:
        port = free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_PY_")}
        environ.update(TUSD_PY_DATA_DIR=f"{tmp}/data", TUSD_PY_PORT=str(port), TUSD_PY_ARGON2_PROFILE="fast")
        server = subprocess.Popen(
            [sys.executable, "-m", "tusd_py", "serve"], env=environ, cwd=tmp, start_new_session=True
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    print("tusd-py serve did not become ready", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            sample = Path(tmp) / "hello.txt"
            sample.write_text("hello from the tusd-py console\n" * 2000)
            result = run_scenario("screenshots.cjs", base, str(out), str(sample))
            for name in result["written"]:
                print(f"wrote {out / name} ({(out / name).stat().st_size} bytes)")
            return 0
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")))
