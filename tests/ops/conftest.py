"""Fixtures of the ops tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Logging as the tests found it, after a test that configured it (the
    plain tracebacks the top conftest sets, not structlog's defaults, whose
    rich tracebacks take a tenth of a second each)."""
    found = structlog.get_config()
    yield
    structlog.reset_defaults()
    structlog.configure(**found)
    logging.getLogger().handlers.clear()
    logging.getLogger().setLevel(logging.WARNING)
