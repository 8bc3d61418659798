"""docker-compose.yml and its test override, read (fast; part of ``make test``).

The container test runs the override on top of the user's file; these checks keep the
two in step so that what the test runs is what users run, apart from the documented
differences (local images, host networking, moved ports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader that reads compose's `!reset` / `!override` merge tags as plain values."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(_tag, _tagged)


def load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=ComposeLoader)  # a SafeLoader subclass


USER = load(ROOT / "docker-compose.yml")
TEST = load(HERE / "compose.test.yml")


def test_the_user_file_has_the_topology_the_issue_asks_for() -> None:
    services = USER["services"]
    assert set(services) == {"redis", "api", "worker"}
    redis = services["redis"]["command"]
    assert redis[0] == "redis-server"
    assert redis[redis.index("--appendonly") + 1] == "yes"
    assert redis[redis.index("--maxmemory-policy") + 1] == "noeviction"
    for name in ("redis", "api", "worker"):
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("api", "worker"):
        env = services[name]["environment"]
        # Required, never generated per container: compose refuses to start without it.
        assert env["TUSD_PY_JWT_SECRET"].startswith("${TUSD_PY_JWT_SECRET:?"), name
        assert "TUSD_PY_PUBLIC_URL" in env and "TUSD_PY_ALLOWED_HOSTS" in env, name
        assert "files:/data" in services[name]["volumes"], name
        assert services[name]["build"]["context"] == "."
        assert services[name]["image"] == services["api"]["image"]
    assert "healthcheck" in services["redis"] and "healthcheck" in services["worker"]
    assert "HEALTHCHECK" in (ROOT / "Dockerfile").read_text()  # the api's


def test_the_override_changes_only_images_network_and_ports() -> None:
    user, test = USER["services"], TEST["services"]
    assert set(test) == set(user)
    # Redis runs with the user's flags, then the moved port.
    assert test["redis"]["command"][: len(user["redis"]["command"])] == user["redis"]["command"]
    assert test["redis"]["command"][len(user["redis"]["command"]) :] == [
        "--port",
        "${TEST_REDIS_PORT:?}",
        "--bind",
        "127.0.0.1",
    ]
    for name, service in test.items():
        assert service["network_mode"] == "host", name
        assert service["image"].startswith("localhost/"), name
    assert "6379" not in repr(TEST)  # the machine's own Redis listens there
    assert test["api"]["environment"]["TUSD_PY_PORT"] == "${TEST_API_PORT:?}"
    assert test["api"]["ports"] == []
