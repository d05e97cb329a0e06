"""The API fixtures (real database, world of two tenants) for end-to-end CLI tests."""

from tests.api.conftest import api_engine, config, world

__all__ = ["api_engine", "config", "world"]
