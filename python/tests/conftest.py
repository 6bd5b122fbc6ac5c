"""Shared helpers of the Python module's tests: the repository, its svcca binary, and
the command line's answers to compare the module's with."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "svcca_ref"


@pytest.fixture(scope="session")
def svcca_binary():
    """target/release/svcca, which scripts/setup.sh builds before the module."""
    path = ROOT / "target" / "release" / "svcca"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/setup.sh (it builds the binary, then the module)")
    return path


def run_cli(binary, *args, check=True):
    """Runs the svcca binary; returns the completed process (stdout and stderr as text)."""
    env = dict(os.environ, SVCCA_LOG="warn", NO_COLOR="1")
    done = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"svcca {' '.join(map(str, args))}: status {done.returncode}\n{done.stderr}")
    return done


def cli_compare(binary, a_path, b_path, *options):
    """`svcca compare A B OPTIONS --json --device cpu`, parsed."""
    return json.loads(run_cli(binary, "compare", a_path, b_path, *options, "--json", "--device", "cpu").stdout)
