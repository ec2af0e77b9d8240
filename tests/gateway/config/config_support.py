"""Helpers shared by the config tests: load a directory and collect the problems it has."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config.errors import ConfigError, Problem
from gateway.config.loader import load_directory

Writer = Callable[[str, str], Path]
GW = "gateway.networking.k8s.io"


def problems(write: Writer, text: str, name: str = "obj.yaml") -> list[Problem]:
    path = write(name, text)
    with pytest.raises(ConfigError) as info:
        load_directory(path.parent)
    return list(info.value.problems)


def one_problem(write: Writer, text: str) -> Problem:
    found = problems(write, text)
    assert len(found) == 1, found
    return found[0]
