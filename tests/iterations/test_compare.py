"""Comparing two batches row by row: counts, pages, rows only one side has, field counts."""

from __future__ import annotations

import pytest

from batches import iterations
from tests.helpers.api import orm_batch

pytestmark = pytest.mark.django_db


def batch(user, outputs):
    return orm_batch(user, [{"text": f"t{i}"} for i in range(len(outputs))],
                     statuses=["succeeded"] * len(outputs), outputs=outputs, status="completed")


def test_rows_only_the_older_version_has_count_as_changed_and_come_last(user):
    a = batch(user, ["x", "y", "z", "gone"])
    b = batch(user, ["x", "Y"])
    result = iterations.compare_batches(a, b, limit=None)
    assert (result.rows, result.changed, result.listed) == (4, 3, 4)
    assert [(r.index, r.a_output, r.b_status) for r in result.page] == [
        (0, "x", "succeeded"), (1, "y", "succeeded"), (2, "z", None), (3, "gone", None)]


def test_rows_only_the_newer_version_has_count_as_changed(user):
    a = batch(user, ["x"])
    b = batch(user, ["x", "new"])
    result = iterations.compare_batches(a, b, changed_only=True)
    assert (result.rows, result.changed) == (2, 1)
    assert [(r.index, r.a_status, r.b_output) for r in result.page] == [(1, None, "new")]


def test_pages_run_across_the_rows_only_one_side_has(user):
    a = batch(user, [f"a{i}" for i in range(5)])
    b = batch(user, ["a0", "b1", "a2"])
    pages = [iterations.compare_batches(a, b, offset=o, limit=2).page for o in (0, 2, 4)]
    assert [[r.index for r in page] for page in pages] == [[0, 1], [2, 3], [4]]
    changed = [iterations.compare_batches(a, b, changed_only=True, offset=o, limit=2).page
               for o in (0, 2)]
    assert [[r.index for r in page] for page in changed] == [[1, 3], [4]]


def test_a_status_change_with_the_same_text_is_a_change(user):
    a = batch(user, [""])
    b = orm_batch(user, [{"text": "t0"}], statuses=["failed"], status="completed")
    assert iterations.compare_batches(a, b).changed == 1


def test_json_answers_count_changes_per_field(user):
    a = batch(user, ['{"label": "pos", "score": 1}', '{"label": "neg"}', "plain"])
    b = batch(user, ['{"label": "pos", "score": 2}', '{"label": "pos", "why": "x"}', "other"])
    result = iterations.compare_batches(a, b)
    assert result.field_changes == {"label": 1, "score": 1, "why": 1}
    assert result.page[1].changed_fields == ("label", "why")
