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


# Three real-world tables of different shapes for the estimate's accuracy (docs/costs.md),
# built from data that ships with Python and the repository, so no download is needed.
ACCURACY_PROMPTS = {
    "reviews.csv": "Classify the sentiment of this review of {{product}} ({{rating}} stars) as "
                   "positive, neutral or negative: {{review}}",
    "python_docs.csv": "Summarise this paragraph of the Python documentation (topic "
                       "{{topic}}) in one sentence:\n\n{{paragraph}}",
    "html_entities.csv": "Describe when a web page would use the character {{character}} "
                         "(HTML entity {{entity}}, Unicode name {{name}}).",
}


def accuracy_csvs(directory) -> dict[str, object]:
    """reviews.csv: the demo's product reviews (20 rows, short text); python_docs.csv: 1,000
    paragraphs of Python's own documentation (long, uneven text); html_entities.csv: 1,000 rows
    of the HTML5 entity table (short structured fields, symbols)."""
    import csv
    import html.entities
    import shutil
    import unicodedata
    from pathlib import Path
    from pydoc_data.topics import topics

    from django.conf import settings

    directory = Path(directory)
    paths = {}
    paths["reviews.csv"] = directory / "reviews.csv"
    shutil.copy(Path(settings.BASE_DIR) / "batches" / "demo" / "reviews.csv",
                paths["reviews.csv"])
    paths["python_docs.csv"] = directory / "python_docs.csv"
    with open(paths["python_docs.csv"], "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["topic", "paragraph"])
        rows = [(topic, p.strip()) for topic, text in sorted(topics.items())
                for p in text.split("\n\n") if len(p.strip()) > 40]
        writer.writerows(rows[:1000])
    paths["html_entities.csv"] = directory / "html_entities.csv"
    with open(paths["html_entities.csv"], "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["entity", "character", "name"])
        entities = sorted(html.entities.html5.items())[:1000]
        writer.writerows((f"&{name}", char, " + ".join(
            unicodedata.name(c, f"U+{ord(c):04X}") for c in char)) for name, char in entities)
    return paths
