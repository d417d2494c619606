"""Cost fixtures: the seeded prices (a transactional test's flush removes migration data)."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from batches import costs

seed_migration = importlib.import_module("batches.migrations.0008_model_prices")


@pytest.fixture
def prices(db):
    """The published prices the data migration seeds, whatever earlier tests flushed."""
    seed_migration.seed(apps, None)
    costs.clear_price_cache()
    costs.budgets._limit_cache.clear()
    yield
    costs.clear_price_cache()
    costs.budgets._limit_cache.clear()
