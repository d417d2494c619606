"""The HTML of the rows pages repeat: the results table's rows, the dashboard's batches, a batch's
status badge and a row's sources. The templates use them through the tags in
batches/templatetags/batch_rows.py.

They are built in Python rather than with an {% include %} per row, which cost a page of 50
results most of its CPU time. Every value goes through `_format`, which escapes it as the
template engine does; keep it that way when changing the markup."""

from __future__ import annotations

import html
from collections.abc import Iterable

from django.contrib.humanize.templatetags.humanize import intcomma
from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils.formats import localize
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import template_localtime

from batches.models import Batch, BatchResult

EMPTY = mark_safe("")


def _escape(value: object) -> str:
    """conditional_escape without its lazy-string wrappers (a few µs a value, on every cell)."""
    return value.__html__() if hasattr(value, "__html__") else html.escape(str(value))


def _format(template: str, *args: object, **kwargs: object) -> SafeString:
    """format_html: the values escaped unless marked safe, the template trusted."""
    return mark_safe(template.format(*map(_escape, args),
                                     **{k: _escape(v) for k, v in kwargs.items()}))


def _join(parts: Iterable[SafeString]) -> SafeString:
    """Safe pieces as one (str.join would drop their safety)."""
    return mark_safe("".join(parts))


def csrf_input(token: object) -> SafeString:
    """What {% csrf_token %} renders for the page's token."""
    if not token or token == "NOTPROVIDED":
        return EMPTY
    return _format('<input type="hidden" name="csrfmiddlewaretoken" value="{}">', token)


def status_badge(batch: Batch) -> SafeString:
    label = ("cancelling" if batch.cancel_requested and batch.is_active
             else batch.get_status_display().lower())
    return _format('<span class="badge badge-{}">{}</span>', batch.status, label)


def row_sources(row: BatchResult) -> SafeString:
    """A grounded row's sources; only http(s) ones are links."""
    links = row.source_links
    if not links:
        return EMPTY
    items = _join(
        _format('<li><a href="{}" rel="noopener noreferrer nofollow" target="_blank" '
                'title="{}">{}</a></li>', link.href, link.uri, link.title)
        if link.href else
        _format('<li>{} <span class="muted">({})</span></li>', link.title, link.uri)
        for link in links)
    return _format('<details class="sources"><summary class="small">Sources ({})</summary>'
                   '<ul class="source-list small">{}</ul></details>', len(links), items)


# The results table -----------------------------------------------------------------------------

RESULT_ROW = """<tr id="row-{index}" class="row-{status}" data-status="{status}"{oob}>
  {select}
  <th scope="row" class="num muted row-number" data-label="Row">{number}</th>
  {inputs}
  {answers}
  <td data-label="Status"><span class="badge badge-{status}">{status}</span>{cached}</td>
  <td class="num" data-label="Tries">{attempts}</td>
  <td class="error-cell" data-label="Error">{error}</td>
  <td class="row-actions">{actions}</td>
</tr>"""
SELECT_CELL = ('<td class="row-select"><input type="checkbox" name="indexes" value="{}" '
               'form="rerun-form" aria-label="Select row {}"></td>')
INPUT_CELL = '<td class="input-cell" data-label="{}">{}</td>'
ANSWER_CELL = '<td class="output-cell" data-label="{}">{}{}</td>'
LONG_ANSWER = '<details><summary>{}…</summary><div class="output-full">{}</div></details>'
SHORT_ANSWER = '<div class="output-full">{}</div>'
CACHED_BADGE = mark_safe(' <span class="badge badge-cached" title="Reused an identical earlier '
                         'answer: no request, no cost">cached</span>')
OOB = mark_safe(' hx-swap-oob="true"')
RETRY_FORM = """
    <form method="post" action="{url}" hx-post="{url}" hx-target="closest tr" hx-swap="outerHTML">\
{csrf}<input type="hidden" name="next" value="{next}"><button type="submit" \
class="button button-small button-secondary" aria-label="Retry row {number}">Retry</button></form>
  """
REMOVE_FORM = """
    <form method="post" action="{url}" data-confirm="Remove row {number}? It will not run.">\
{csrf}<input type="hidden" name="next" value="{next}"><button type="submit" \
class="button button-small button-ghost" aria-label="Remove row {number}">Remove</button></form>
  """


def _answer_cells(row: BatchResult) -> SafeString:
    """The answer columns; the last one carries the row's sources."""
    cells = []
    last = len(row.answer_cells) - 1
    for i, cell in enumerate(row.answer_cells):
        text = (_format(LONG_ANSWER, cell.head, cell.text) if cell.is_long
                else _format(SHORT_ANSWER, cell.text))
        cells.append(_format(ANSWER_CELL, cell.header, text,
                             row_sources(row) if i == last else EMPTY))
    return _join(cells)


def _actions(row: BatchResult, batch: Batch, next_path: str, csrf_token: object) -> SafeString:
    """Retry for a failed or cancelled row, Remove for a pending or failed one."""
    retry = row.status in (BatchResult.Status.FAILED, BatchResult.Status.CANCELLED)
    remove = row.status in (BatchResult.Status.PENDING, BatchResult.Status.FAILED)
    if not (retry or remove):
        return EMPTY
    forms = []
    given = {"next": next_path, "number": row.row_number, "csrf": csrf_input(csrf_token)}
    if retry:
        url = reverse("batch_retry_row", args=[batch.pk, row.index])
        forms.append(_format(RETRY_FORM, url=url, **given))
    if remove:
        url = reverse("batch_delete_row", args=[batch.pk, row.index])
        forms.append(_format(REMOVE_FORM, url=url, **given))
    return _join(forms)


def result_row(row: BatchResult, *, batch: Batch, next_path: str, csrf_token: object,
               oob: bool = False) -> SafeString:
    """A row of the results table (a row decorated by web.results.decorate); `next_path` is
    where its forms come back to."""
    number = row.row_number
    return _format(
        RESULT_ROW, index=row.index, status=row.status, number=number, oob=OOB if oob else EMPTY,
        select=EMPTY if batch.is_draft else _format(SELECT_CELL, row.index, number),
        inputs=_join(_format(INPUT_CELL, c.header, c.text) for c in row.input_cells),
        answers=_answer_cells(row), cached=CACHED_BADGE if row.cached else EMPTY,
        attempts=row.attempts, error=row.error, actions=_actions(row, batch, next_path, csrf_token),
    )


# The dashboard ---------------------------------------------------------------------------------

DASHBOARD_ROW = """<tr class="{active}">
    <td class="name"><a href="{url}">{name}</a>
      <div class="muted small">{model}</div></td>
    <td>{badge}</td>
    <td class="col-progress">
      <div class="bar" role="progressbar" aria-label="Rows processed of {name}" \
aria-valuenow="{percent}" aria-valuemin="0" aria-valuemax="100">
        {bar}
      </div>
      <span class="small muted">{rounded}% · <span class="tally">{summary}</span></span>
    </td>
    <td class="num{danger}">{failed}</td>
    <td class="num">{spent}</td>
    {owner}
    <td class="small hide-small"><time datetime="{iso}" title="{created}">{ago}</time></td>
  </tr>"""
BAR_SEGMENT = '<span class="bar-fill bar-{}" style="width: {}%"></span>'
OWNER_CELL = '<td class="hide-small">{}</td>'


def dashboard_row(row, *, show_owner: bool) -> SafeString:
    """One batch of the dashboard (a web.pages.DashboardRow)."""
    batch = row.batch
    created = template_localtime(batch.created_at)
    return _format(
        DASHBOARD_ROW, active="is-active" if batch.is_active else "",
        url=reverse("batch_detail", args=[batch.pk]), name=batch.display_name,
        model=batch.model_name, badge=status_badge(batch), percent=localize(row.percent),
        bar=_join(_format(BAR_SEGMENT, status, f"{width:.1f}") for status, width in row.bar),
        rounded=floatformat(row.percent, "0"), summary=row.summary,
        danger=" text-danger" if row.failed else "", failed=intcomma(row.failed),
        spent=row.spent,
        owner=_format(OWNER_CELL, batch.owner.get_username()) if show_owner else EMPTY,
        # What the template's |date:"c" gave, without its format parsing.
        iso=created.isoformat(), created=localize(created), ago=row.created_ago,
    )
