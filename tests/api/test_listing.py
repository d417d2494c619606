"""The batch list's limit/offset and staff-only owner filter, the results' `?q=` search (and the
export's, the same rows), and the 400s that name the bad parameter."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.db import connection
from django.utils import timezone

from batches.models import Batch, BatchResult
from tests.helpers.api import client_for


@pytest.fixture
def five(make_batch, user):
    """Five batches of the user, newest first."""
    made = []
    for n in range(5):
        batch = make_batch(name=f"b{n}")
        Batch.objects.filter(pk=batch.pk).update(created_at=timezone.now()
                                                 - timezone.timedelta(hours=n))
        made.append(batch.pk)
    return made


def ids(body) -> list[int]:
    return [b["id"] for b in body["results"]]


def test_limit_and_offset_page_the_list_with_links(user, five):
    body = client_for(user).get("/api/batches/?limit=2&offset=1").json()
    assert body["count"] == 5 and ids(body) == five[1:3]
    assert "limit=2" in body["next"] and "offset=3" in body["next"]
    assert "offset" not in body["previous"] or "offset=0" not in body["previous"]
    assert ids(client_for(user).get("/api/batches/?offset=4").json()) == five[4:]
    assert ids(client_for(user).get("/api/batches/?limit=500").json()) == five
    # The page parameters still work as before.
    assert ids(client_for(user).get("/api/batches/?page_size=2&page=2").json()) == five[2:4]


@pytest.mark.parametrize("query, field", [
    ("limit=501", "limit"), ("limit=0", "limit"), ("limit=-1", "limit"), ("limit=ten", "limit"),
    ("limit=2.5", "limit"), ("offset=-1", "offset"), ("offset=x", "offset"),
    ("offset=", "offset"), ("limit=2&page=2", "page"), ("owner=alice", "owner"),
])
def test_bad_list_parameters_answer_400_naming_the_field(user, five, query, field):
    response = client_for(user).get(f"/api/batches/?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_staff_filter_by_owner_id_or_username(user, other_user, staff_user, five, make_batch):
    theirs = make_batch(owner=other_user).pk
    staff = client_for(staff_user)
    assert set(ids(staff.get("/api/batches/?limit=500").json())) == {*five, theirs}
    assert ids(staff.get(f"/api/batches/?owner={other_user.pk}").json()) == [theirs]
    assert ids(staff.get("/api/batches/?owner=bob").json()) == [theirs]
    assert ids(staff.get("/api/batches/?owner=alice&limit=2").json()) == five[:2]
    missing = staff.get("/api/batches/?owner=nobody")
    assert missing.status_code == 400 and "owner" in missing.json()


def test_a_user_never_sees_another_users_batches_even_naming_them(user, other_user, five,
                                                                  make_batch):
    make_batch(owner=other_user)
    bob = client_for(other_user)
    for query in (f"owner={user.pk}", "owner=alice", f"owner={other_user.pk}"):
        assert bob.get(f"/api/batches/?{query}").status_code == 400
    assert len(ids(bob.get("/api/batches/?limit=500&offset=0").json())) == 1


@pytest.fixture
def answered(make_batch):
    texts = ["the red fox", "a blue whale", "Red wine", "green tea", "café crème"]
    batch = make_batch(rows=[{"text": t} for t in texts])
    outputs = ["fast animal", "large animal", "drink", "drink with whale oil", "drink"]
    for index, output in enumerate(outputs):
        BatchResult.objects.filter(batch=batch, index=index).update(
            output=output, status="succeeded" if index != 3 else "failed")
    return batch


def found(client, batch, query) -> list[int]:
    body = client.get(f"/api/batches/{batch.pk}/results/?{query}").json()
    assert "page=" in query or body["count"] == len(body["results"])
    return [r["index"] for r in body["results"]]


def test_results_search_matches_inputs_and_outputs_of_this_batch_only(user, answered,
                                                                      make_batch):
    api = client_for(user)
    make_batch(rows=[{"text": "red fox again"}])  # another batch's rows never come back
    assert found(api, answered, "q=red") == [0, 2]  # case-insensitive, input values
    assert found(api, answered, "q=whale") == [1, 3]  # an input and an output
    assert found(api, answered, "q=animal") == [0, 1]
    assert found(api, answered, "q=whale&status=failed") == [3]
    assert found(api, answered, "q=caf%C3%A9") == [4]
    assert found(api, answered, "q=nothing-like-this") == []
    assert found(api, answered, "q=%20%20") == [0, 1, 2, 3, 4]  # blank: no filter
    assert found(api, answered, "q=drink&page_size=1&page=2") == [3]
    paged = api.get(f"/api/batches/{answered.pk}/results/?q=drink&page_size=1").json()
    assert paged["count"] == 3 and "q=drink" in paged["next"]


def test_results_search_is_checked_and_scoped_to_the_owner(user, other_user, answered):
    api = client_for(user)
    response = api.get(f"/api/batches/{answered.pk}/results/?q={'x' * 201}")
    assert response.status_code == 400 and list(response.json()) == ["q"]
    assert api.get(f"/api/batches/{answered.pk}/results/?q=a%00b").status_code == 400
    bob = client_for(other_user)
    assert bob.get(f"/api/batches/{answered.pk}/results/?q=red").status_code == 404


@pytest.mark.skipif(connection.vendor != "postgresql", reason="full text on PostgreSQL only")
def test_postgres_search_takes_words_phrases_and_exclusions(user, answered):
    api = client_for(user)
    assert found(api, answered, "q=%22blue+whale%22") == [1]
    assert found(api, answered, "q=drink+-whale") == [2, 4]
    assert found(api, answered, "q=fox+or+tea") == [0, 3]
    assert found(api, answered, "q=text") == []  # a column name is not an input value


def test_a_search_costs_a_fixed_number_of_queries(user, answered, django_assert_max_num_queries):
    api = client_for(user)
    with django_assert_max_num_queries(5):
        assert api.get(f"/api/batches/{answered.pk}/results/?q=drink").status_code == 200



# The export takes the same `?q=` ----------------------------------------------------------------

def exported(client, batch, fmt, query) -> list[int]:
    """The row indexes a `fmt` export with `query` holds (its first column is the row, from 1)."""
    response = client.get(f"/api/batches/{batch.pk}/export/?format={fmt}&{query}")
    assert response.status_code == 200, response.content
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    if fmt == "jsonl":
        return [json.loads(line)["row"] - 1 for line in text.splitlines()]
    return [int(row[0]) - 1 for row in list(csv.reader(io.StringIO(text, newline="")))[1:]]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_export_with_q_has_exactly_the_rows_the_search_finds(user, answered, make_batch,
                                                                 fmt):
    api = client_for(user)
    make_batch(rows=[{"text": "red fox again"}])  # another batch's rows never come back
    expected = {"q=red": [0, 2], "q=whale": [1, 3], "q=whale&status=failed": [3],
                "q=drink&status=succeeded,failed": [2, 3, 4], "q=drink&status=failed": [3],
                "q=caf%C3%A9": [4], "q=nothing-like-this": [], "q=%20%20": [0, 1, 2, 3, 4]}
    for query, rows in expected.items():
        assert exported(api, answered, fmt, query) == rows, query
        assert found(api, answered, query) == rows, query  # what the results list shows


@pytest.mark.skipif(connection.vendor != "postgresql", reason="full text on PostgreSQL only")
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_postgres_export_takes_words_phrases_and_exclusions(user, answered, fmt):
    api = client_for(user)
    assert exported(api, answered, fmt, "q=%22blue+whale%22") == [1]
    assert exported(api, answered, fmt, "q=drink+-whale") == [2, 4]
    assert exported(api, answered, fmt, "q=fox+or+tea&status=failed") == [3]
    assert exported(api, answered, fmt, "q=text") == []


def test_an_export_with_a_bad_q_is_a_400_naming_q(user, answered):
    api = client_for(user)
    for query in (f"q={'x' * 201}", "q=a%00b", f"q={'x' * 201}&status=failed"):
        response = api.get(f"/api/batches/{answered.pk}/export/?format=csv&{query}")
        assert response.status_code == 400 and list(response.json()) == ["q"], query
    assert exported(api, answered, "csv", f"q={'x' * 200}") == []  # the limit itself is fine


def test_an_export_with_q_of_another_users_batch_is_404(other_user, answered):
    bob = client_for(other_user)
    for fmt in ("csv", "jsonl", "xlsx"):
        response = bob.get(f"/api/batches/{answered.pk}/export/?format={fmt}&q=red")
        assert response.status_code == 404


def test_the_export_documents_q_like_the_results_list():
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    export = {p["name"]: p for p in paths["/api/batches/{id}/export/"]["get"]["parameters"]}
    listed = {p["name"]: p for p in paths["/api/batches/{id}/results/"]["get"]["parameters"]}
    assert export["q"] == listed["q"]
    assert export["q"]["schema"]["maxLength"] == 200
