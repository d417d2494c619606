"""Template tags: {% load batch_rows %} (batch_rows.py)."""
