"""The container tests take minutes and need root and podman: they run from
``make test-containers`` (tests/containers/run.sh sets TUSD_PY_CONTAINER_TESTS=1),
never as part of ``make test``. The compose-file checks beside them always run."""

import os

if os.environ.get("TUSD_PY_CONTAINER_TESTS") != "1":
    collect_ignore = ["test_topology.py"]
