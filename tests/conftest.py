"""Shared fixtures: the MXNet oracle data copied into tests/data/oracle, and small writers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
ORACLE = DATA / "oracle"


def oracle_path(name: str) -> str:
    return str(ORACLE / name)


@pytest.fixture(scope="session")
def oracle_cases() -> dict:
    return json.loads((ORACLE / "cases.json").read_text())


def load_sources(name: str) -> list[np.ndarray]:
    z = np.load(ORACLE / "sources" / f"{name}.npz")
    return [z[f"arr_{i}"] for i in range(len(z.files))]


def pytest_report_header(config):
    import cv2

    return f"numpy {np.__version__}, opencv {cv2.__version__}"
