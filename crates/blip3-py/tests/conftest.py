"""Shared fixtures: the tiny models of testdata/ and the `blip3` binary to compare with."""

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
TINY = ROOT / "testdata" / "blip3-tiny"
V15 = ROOT / "testdata" / "xgenmm-v15-tiny"


def blip3_binary() -> pathlib.Path:
    """The CLI the ids are compared with: $BLIP3_BIN, else target/debug/blip3."""
    path = pathlib.Path(os.environ.get("BLIP3_BIN", ROOT / "target" / "debug" / "blip3"))
    if not path.is_file():
        pytest.fail(f"{path} not found: build it with `cargo build -p blip3-cli` or set BLIP3_BIN")
    return path


def cli_json(*args: str) -> dict:
    """`blip3 <args> --json`'s object."""
    out = subprocess.run(
        [str(blip3_binary()), *args, "--json"], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="session")
def tiny():
    import blip3

    return blip3.Model(TINY / "model")


@pytest.fixture(scope="session")
def v15():
    import blip3

    return blip3.Model(V15 / "model")


def image(name: str) -> pathlib.Path:
    return TINY / "images" / name


def v15_image(name: str) -> pathlib.Path:
    return V15 / "images" / name
