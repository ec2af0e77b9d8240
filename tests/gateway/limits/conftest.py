"""Fixtures for the limits tests (DESIGN.md §4): one counting backend for the session.

Each test module starts its own gateway (module scope) with the ProxySettings it needs, through
``limits_support.run_gateway``. The helpers live in ``limits_support`` so that test modules can
import them; this directory is put on ``sys.path`` for that.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from limits_support import Backend  # noqa: E402


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    b = Backend().start()
    yield b
    b.stop()
