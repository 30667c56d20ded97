"""The serving tests' environment: no capture setting leaks in from the shell that runs them."""

import pytest

from tasks.config import CAPTURE_ENV


@pytest.fixture(autouse=True)
def no_capture_environment(monkeypatch):
    for variable in CAPTURE_ENV.values():
        monkeypatch.delenv(variable, raising=False)
