"""The batch page's results search (?q=): rows whose input values or answer match, within the
status filter, paged with the search kept; a bad search says why; another user's batch is 404."""

from django.urls import reverse

from batches.models import BatchResult

HX = {"HTTP_HX_REQUEST": "true"}


def page_rows(client, batch, **params) -> list[int]:
    body = client.get(reverse("batch_detail", args=[batch.pk]), params, **HX).content.decode()
    return sorted(int(i) for i in _indexes(body))


def _indexes(body: str):
    import re

    return re.findall(r'id="row-(\d+)"', body)


def searchable(make_batch):
    batch = make_batch(rows=[{"text": t} for t in
                             ("the red fox", "a blue whale", "Red wine", "green tea")])
    for index, output in enumerate(("fast animal", "large animal", "drink", "whale oil")):
        BatchResult.objects.filter(batch=batch, index=index).update(
            output=output, status="failed" if index == 3 else "succeeded")
    return batch


def test_the_search_shows_matching_rows_within_the_status_filter(client, user, make_batch):
    client.force_login(user)
    batch = searchable(make_batch)
    assert page_rows(client, batch, q="red") == [0, 2]
    assert page_rows(client, batch, q="whale") == [1, 3]
    assert page_rows(client, batch, q="whale", status="failed") == [3]
    assert page_rows(client, batch) == [0, 1, 2, 3]
    empty = client.get(reverse("batch_detail", args=[batch.pk]), {"q": "<zebra>"}, **HX)
    assert "No rows match “&lt;zebra&gt;”" in empty.content.decode()  # escaped


def test_paging_a_search_keeps_it(client, user, make_batch, monkeypatch):
    monkeypatch.setattr("batches.web.results.RESULTS_PAGE_SIZE", 1)
    client.force_login(user)
    batch = searchable(make_batch)
    body = client.get(reverse("batch_detail", args=[batch.pk]), {"q": "animal"}).content.decode()
    assert _indexes(body) == ["0"] and "page=2&amp;q=animal" in body
    second = client.get(reverse("batch_detail", args=[batch.pk]), {"q": "animal", "page": 2},
                        **HX).content.decode()
    assert _indexes(second) == ["1"] and 'value="animal"' in second


def test_a_too_long_search_is_refused_with_a_message(client, user, make_batch):
    client.force_login(user)
    batch = searchable(make_batch)
    body = client.get(reverse("batch_detail", args=[batch.pk]), {"q": "x" * 201},
                      **HX).content.decode()
    assert "limited to 200 characters" in body and len(_indexes(body)) == 4


def test_another_users_batch_is_404_with_a_search(client, other_user, user, make_batch):
    batch = searchable(make_batch)
    client.force_login(other_user)
    assert client.get(reverse("batch_detail", args=[batch.pk]), {"q": "red"}).status_code == 404
