"""Settings come from TUSD_PY_* variables; a bad one stops start-up, named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tusd_py.settings import Settings, SettingsError, documented_variables


def test_defaults_work_on_a_laptop() -> None:
    settings = Settings.from_env({})
    assert settings.data_dir == Path("./data")
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.redis_url is None
    assert settings.max_upload_size == 104_857_600
    assert settings.job_timeout == 120.0
    assert settings.max_retries == 3 and settings.max_tries == 4
    assert settings.max_jobs == 2


def test_values_are_parsed_and_typed() -> None:
    settings = Settings.from_env(
        {
            "TUSD_PY_PORT": "9000",
            "TUSD_PY_JOB_TIMEOUT": "2.5",
            "TUSD_PY_CORS_ORIGINS": "https://a.example, https://b.example",
            "TUSD_PY_TRUST_PROXY": "yes",
            "TUSD_PY_REDIS_URL": "unix:///tmp/r.sock",
        }
    )
    assert settings.port == 9000
    assert settings.job_timeout == 2.5
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.trust_proxy is True
    assert settings.redis_url == "unix:///tmp/r.sock"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TUSD_PY_PORT", "eighty"),
        ("TUSD_PY_PORT", "70000"),
        ("TUSD_PY_JOB_TIMEOUT", "-1"),
        ("TUSD_PY_JOB_TIMEOUT", "nan"),
        ("TUSD_PY_MAX_JOBS", "0"),
        ("TUSD_PY_TRUST_PROXY", "maybe"),
        ("TUSD_PY_REDIS_URL", "http://localhost"),
        ("TUSD_PY_JWT_SECRET", "too-short"),
        ("TUSD_PY_ARGON2_PROFILE", "cheap"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_bad_value_stops_startup_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tusd_py", "api"],
        env={**os.environ, "TUSD_PY_PORT": "eighty"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["tusd-py: TUSD_PY_PORT='eighty': not a number"]


def test_every_variable_is_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [name for name, _, _ in documented_variables() if f"`{name}`" not in readme]
    assert missing == []


def test_help_shows_defaults_as_written_and_real_operation_names() -> None:
    from processing.operations import REGISTRY

    result = subprocess.run(
        [sys.executable, "-m", "tusd_py", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "TUSD_PY_TRUST_PROXY (default false)" in result.stdout
    assert "TUSD_PY_ENABLE_FAULT_OPERATIONS (default false)" in result.stdout
    assert "False" not in result.stdout and "True" not in result.stdout
    faults = [name for name, op in REGISTRY.items() if op.fault]
    assert faults and [name for name in faults if name not in result.stdout] == []
