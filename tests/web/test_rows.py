"""The rows built in Python (batches/web/rows.py) escape every value as the templates did."""

from django.contrib.auth import get_user_model

from batches.models import Batch, BatchResult
from batches.web.pages import DashboardRow
from batches.web.results import answer_columns, decorate
from batches.web.rows import dashboard_row, result_row, row_sources, status_badge

XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
QUOTE = 'a "quoted" & <b>'
ESCAPED_QUOTE = "a &quot;quoted&quot; &amp; &lt;b&gt;"


def _row(**fields) -> tuple[Batch, BatchResult]:
    batch = Batch(pk=7, name=XSS, columns=[QUOTE], status=Batch.Status.COMPLETED_WITH_ERRORS)
    row = BatchResult(batch=batch, index=3, input={QUOTE: XSS}, **fields)
    decorate([row], [QUOTE], answer_columns(batch))
    return batch, row


def test_a_result_row_escapes_the_input_the_answer_the_error_and_the_path():
    batch, row = _row(status="failed", output=XSS, error=XSS, cached=True)
    html = result_row(row, batch=batch, next_path="/p?q=" + QUOTE, csrf_token=QUOTE, oob=True)
    assert XSS not in html and QUOTE not in html
    assert html.count(ESCAPED) == 3  # input, answer, error
    assert f'data-label="{ESCAPED_QUOTE}"' in html
    assert f'name="next" value="/p?q={ESCAPED_QUOTE}"' in html
    assert f'name="csrfmiddlewaretoken" value="{ESCAPED_QUOTE}"' in html
    assert 'hx-swap-oob="true"' in html and "Retry row 4" in html and "Remove row 4" in html


def test_a_long_answer_is_escaped_in_its_summary_and_in_full():
    batch, row = _row(status="succeeded", output=(XSS + "\n") * 10)
    html = result_row(row, batch=batch, next_path="", csrf_token=None)
    assert XSS not in html
    assert f"<summary>{ESCAPED}…</summary>" in html
    assert 'class="row-actions"></td>' in html  # a succeeded row has no actions


def test_sources_escape_their_titles_and_link_only_http_uris():
    _, row = _row(status="succeeded", sources=[
        {"uri": 'https://example.com/?a=1&b="2"', "title": XSS},
        {"uri": "javascript:alert(1)", "title": ""}])
    html = row_sources(row)
    assert XSS not in html and ESCAPED in html
    assert 'href="https://example.com/?a=1&amp;b=&quot;2&quot;"' in html
    assert 'href="javascript' not in html and "(javascript:alert(1))" in html


def test_a_dashboard_row_escapes_the_batch_name_and_the_owner():
    owner = get_user_model()(username=XSS)
    batch = Batch(pk=7, name=XSS, owner=owner, status=Batch.Status.RUNNING, total_rows=4)
    html = dashboard_row(DashboardRow(batch, {"succeeded": 1, "pending": 3}), show_owner=True)
    assert XSS not in html
    assert html.count(ESCAPED) == 3  # link text, progress bar label, owner
    assert 'class="is-active"' in html and 'aria-valuenow="25.0"' in html
    assert status_badge(batch) == '<span class="badge badge-running">running</span>'
