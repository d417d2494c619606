"""The batch page's results search (?q=): rows whose input values or answer match, within the
status filter, paged with the search kept; the status chips and the downloads keep it too, also
as the progress poll re-renders them; a bad search says why; another user's batch is 404."""

import csv
import html
import io
import re
from urllib.parse import parse_qs, urlsplit

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


# The chips and the downloads keep the search -------------------------------------------------

SPECIAL = 'Tom & "Jerry" #1 <script>'


def downloads(body: str) -> tuple[str, dict[str, str]]:
    """The downloads' label and their links by format, as the browser reads them."""
    part = body.split('id="result-downloads"', 1)[1].split("</span>", 2)
    label = html.unescape(part[0].split(">")[-1])
    hrefs = re.findall(r'href="(/api/batches/\d+/export/\?[^"]*)"', part[1])
    links = {parse_qs(urlsplit(html.unescape(h)).query)["format"][0]: h for h in hrefs}
    return label, links


def chips(body: str) -> dict[str, str]:
    """Each status chip's query string (its link and its htmx request agree)."""
    nav = body.split('id="result-filters"', 1)[1].split("</nav>", 1)[0]
    found = re.findall(r'<a href="\?([^"]*)"[^>]*data-filter="(\w+)"\s+hx-get="[^"?]*\?([^"]*)"',
                       nav)
    assert len(found) == 6
    for href, _, hx_get in found:
        assert href == hx_get
    return {name: href for href, name, _ in found}


def params(link: str) -> dict[str, list[str]]:
    """A link's (or a bare query string's) parameters, as the server reads them."""
    return parse_qs(html.unescape(link).split("?", 1)[-1], keep_blank_values=True)


def searchable_texts(batch) -> list[str]:
    return [row["text"] for row in batch.results.order_by("index").values_list("input", flat=True)]


def exported_texts(client, href: str) -> list[str]:
    response = client.get(html.unescape(href))
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return [row[1] for row in list(csv.reader(io.StringIO(text, newline="")))[1:]]


def test_the_downloads_of_a_searched_view_export_its_rows_and_say_so(client, user, make_batch):
    client.force_login(user)
    batch = searchable(make_batch)
    body = client.get(reverse("batch_detail", args=[batch.pk]),
                      {"status": "failed", "q": "whale"}).content.decode()
    label, links = downloads(body)
    assert label.strip() == "Download failed rows matching “whale”"
    assert set(links) == {"csv", "jsonl", "xlsx"}
    export = f"/api/batches/{batch.pk}/export/"
    assert links["csv"] == f"{export}?format=csv&amp;status=failed&amp;q=whale"
    assert exported_texts(client, links["csv"]) == ["green tea"]
    # Without a status, every status's matching rows.
    body = client.get(reverse("batch_detail", args=[batch.pk]), {"q": "whale"}, **HX)
    label, links = downloads(body.content.decode())
    assert label.strip() == "Download rows matching “whale”"
    assert params(links["jsonl"]) == {"format": ["jsonl"], "q": ["whale"]}
    assert exported_texts(client, links["csv"]) == ["a blue whale", "green tea"]


def test_the_status_chips_keep_the_search(client, user, make_batch):
    client.force_login(user)
    batch = searchable(make_batch)
    body = client.get(reverse("batch_detail", args=[batch.pk]),
                      {"status": "failed", "q": "red wine"}, **HX).content.decode()
    found = chips(body)
    assert found["succeeded"] == "status=succeeded&amp;q=red+wine"
    assert params(found["all"]) == {"status": ["all"], "q": ["red wine"]}
    assert 'data-query="red wine"' in body  # what the progress poll sends back as view_q


def chip_counts(body: str) -> dict[str, int]:
    nav = body.split('id="result-filters"', 1)[1].split("</nav>", 1)[0]
    return {name: int(n) for name, n in
            re.findall(r'data-filter="(\w+)".*?<span class="count">(\d+)</span>', nav, re.S)}


def test_the_status_chips_count_the_rows_matching_the_search(client, user, make_batch):
    client.force_login(user)
    batch = searchable(make_batch)
    url = reverse("batch_detail", args=[batch.pk])
    whole = {"all": 4, "pending": 0, "running": 0, "succeeded": 3, "failed": 1, "cancelled": 0}
    assert chip_counts(client.get(url).content.decode()) == whole
    whale = {**whole, "all": 2, "succeeded": 1, "failed": 1}
    assert chip_counts(client.get(url, {"q": "whale"}).content.decode()) == whale
    # Within a status filter the chips still count every status's matches.
    assert chip_counts(client.get(url, {"q": "whale", "status": "failed"},
                                  **HX).content.decode()) == whale
    # The progress poll of a searched view keeps counting the matches; without one, all rows.
    assert chip_counts(poll(client, batch, view_status="all", view_q="whale")) == whale
    assert chip_counts(poll(client, batch, view_status="all", view_q="")) == whole
    nothing = {name: 0 for name in whole}
    assert chip_counts(client.get(url, {"q": "zebra"}).content.decode()) == nothing


def test_the_poll_reuses_a_searchs_counts_for_a_few_seconds_and_the_page_counts_afresh(
        client, user, make_batch):
    # On a big batch a search reads every row; the 2-second poll must not repeat that each time.
    client.force_login(user)
    batch = searchable(make_batch)
    url = reverse("batch_detail", args=[batch.pk])
    before = chip_counts(client.get(url, {"q": "whale"}).content.decode())
    BatchResult.objects.filter(batch=batch, index=1).update(status="failed")
    assert chip_counts(poll(client, batch, view_status="all", view_q="whale")) == before
    after = chip_counts(client.get(url, {"q": "whale"}).content.decode())
    assert (after["succeeded"], after["failed"]) == (0, 2)


def test_clearing_the_search_drops_it_from_the_chips_and_downloads(client, user, make_batch):
    client.force_login(user)
    batch = searchable(make_batch)
    # The search box sends an empty q with the view's status.
    body = client.get(reverse("batch_detail", args=[batch.pk]),
                      {"status": "failed", "q": "  "}, **HX).content.decode()
    assert chips(body)["succeeded"] == "status=succeeded"
    label, links = downloads(body)
    assert label.strip() == "Download failed rows"
    assert links["csv"] == f"/api/batches/{batch.pk}/export/?format=csv&amp;status=failed"
    assert 'data-query=""' in body and _indexes(body) == ["3"]


def test_search_text_with_special_characters_is_encoded_in_links_and_escaped_in_labels(
        client, user, make_batch):
    client.force_login(user)
    batch = searchable(make_batch)
    BatchResult.objects.filter(batch=batch, index=1).update(output=f"said {SPECIAL} twice")
    body = client.get(reverse("batch_detail", args=[batch.pk]), {"q": SPECIAL}).content.decode()
    assert "<script>" not in body.split('id="batch-results"', 1)[1].split("</table>", 1)[0]
    label, links = downloads(body)
    assert label.strip() == f"Download rows matching “{SPECIAL}”"
    assert "&amp;q=Tom+%26+%22Jerry%22+%231+%3Cscript%3E" in links["csv"]
    assert params(links["csv"]) == {"format": ["csv"], "q": [SPECIAL]}
    assert params(chips(body)["failed"]) == {"status": ["failed"], "q": [SPECIAL]}
    assert 'data-query="Tom &amp; &quot;Jerry&quot; #1 &lt;script&gt;"' in body
    # The download has the rows the view shows. (PostgreSQL's parser drops <script> from
    # a document as an HTML tag but not from the query, so there no row matches it.)
    shown = [searchable_texts(batch)[int(i)] for i in _indexes(body)]
    assert exported_texts(client, links["csv"]) == shown
    plain = client.get(reverse("batch_detail", args=[batch.pk]), {"q": 'Tom & "Jerry" #1'})
    assert exported_texts(client, downloads(plain.content.decode())[1]["csv"]) == ["a blue whale"]


def poll(client, batch, **params):
    return client.get(reverse("batch_detail_progress", args=[batch.pk]),
                      {"seen": "0:succeeded", **params}, **HX).content.decode()


def test_the_progress_poll_keeps_the_views_search_in_chips_and_downloads(client, user,
                                                                       make_batch):
    client.force_login(user)
    batch = searchable(make_batch)
    body = poll(client, batch, view_status="failed", view_q=SPECIAL)
    label, links = downloads(body)
    assert 'hx-swap-oob="true"' in body.split('id="result-downloads"', 1)[1][:40]
    assert label.strip() == f"Download failed rows matching “{SPECIAL}”"
    assert params(links["xlsx"]) == {"format": ["xlsx"], "status": ["failed"], "q": [SPECIAL]}
    assert params(chips(body)["succeeded"]) == {"status": ["succeeded"], "q": [SPECIAL]}
    # No search, or one the page refused, is no search in the poll either.
    for view_q in ("", "x" * 201, "a\x00b"):
        body = poll(client, batch, view_status="failed", view_q=view_q)
        assert downloads(body)[0].strip() == "Download failed rows"
        assert chips(body)["all"] == "status=all"


def test_another_users_batch_is_404_for_a_searched_poll_and_export(client, other_user, user,
                                                                   make_batch):
    batch = searchable(make_batch)
    client.force_login(other_user)
    progress = reverse("batch_detail_progress", args=[batch.pk])
    assert client.get(progress, {"seen": "", "view_q": "red"}, **HX).status_code == 404
    export = f"/api/batches/{batch.pk}/export/?format=csv&q=red"
    assert client.get(export).status_code == 404
