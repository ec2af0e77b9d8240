"""Fixtures for the end-to-end tests: a test CA, shared real backends, config directories.

Backends that a test counts requests on are created by the test module itself, so that
other modules' traffic never shows up in its counts; the shared ones here are for tests
that only look at responses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.backends import GrpcBackend, H2cBackend, HttpBackend


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="isthmus e2e tests")


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def http_backend() -> Iterator[HttpBackend]:
    backend = HttpBackend("http-shared").start()
    yield backend
    backend.stop()


@pytest.fixture(scope="session")
def h2c_backend() -> Iterator[H2cBackend]:
    backend = H2cBackend("h2c-shared").start()
    yield backend
    backend.stop()


@pytest.fixture(scope="session")
def grpc_backend() -> Iterator[GrpcBackend]:
    backend = GrpcBackend("grpc-shared").start()
    yield backend
    backend.stop()
