"""The batch page's results table: which rows a page shows, which columns (the input's own,
picked by the user, then the answer columns), and which rows changed since the page last saw
them, so a poll sends only those.

Answer columns are a list of ResultColumn: structured output adds one per schema field by
extending `answer_columns`, and the table, the cards on a phone and the live updates follow."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from math import ceil
from typing import Any
from urllib.parse import urlsplit

from django.core.cache import cache
from django.db.models import Count
from django.http import HttpRequest

from batches import outputs
from batches.models import SEARCH_MAX_CHARS, Batch, BatchResult
from batches.prompts import format_value

RESULTS_PAGE_SIZE = 50
RESULT_FILTERS = ["all", "succeeded", "failed", "pending", "running", "cancelled"]
DEFAULT_INPUT_COLUMNS = 3
CELL_CHARS = 200
LONG_OUTPUT_CHARS = 280
SEEN_MAX = 2 * RESULTS_PAGE_SIZE
SEARCH_COUNTS_CACHE_S = 10
SESSION_COLUMNS_KEY = "results_columns:{batch_id}"


@dataclass
class ResultColumn:
    """A column of the answer side of the table: its header and how a row's cell reads."""

    key: str
    header: str
    value: Callable[[BatchResult], Any]
    long_text: bool = False


def answer_columns(batch: Batch) -> list[ResultColumn]:
    """The columns the model fills in, beside the input's columns: one per output field for a
    columns batch (a failed row's raw answer stays in the admin and the API), else the text."""
    fields = batch.output_fields
    if fields:
        return [ResultColumn(f.name, f.name, _data_cell(f.name)) for f in fields]
    return [ResultColumn("output", "Answer", lambda row: row.output, long_text=True)]


def _data_cell(name: str) -> Callable[[BatchResult], Any]:
    def value(row: BatchResult) -> str:
        data = row.data if isinstance(row.data, dict) else {}
        return outputs.cell_text(data.get(name))

    return value


@dataclass
class Cell:
    header: str
    text: str
    is_long: bool = False
    head: str = ""


@dataclass
class ResultsPage:
    status: str
    number: int
    num_pages: int
    total: int
    rows: list[BatchResult]
    input_columns: list[str] = field(default_factory=list)
    hidden_columns: list[str] = field(default_factory=list)
    answer_headers: list[str] = field(default_factory=list)
    query: str = ""  # the search (?q=) the rows match
    search_error: str = ""
    # Rows per status among those the view covers: the batch's, or with a search the matching
    # ones' (what the status chips count).
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages

    @property
    def first_index(self) -> int:
        return (self.number - 1) * RESULTS_PAGE_SIZE + 1 if self.total else 0

    @property
    def last_index(self) -> int:
        return min(self.number * RESULTS_PAGE_SIZE, self.total)


def shown_columns(request: HttpRequest, batch: Batch) -> list[str]:
    """The input columns the user picked for this batch (kept in the session), in file order;
    the first few until they pick."""
    key = SESSION_COLUMNS_KEY.format(batch_id=batch.pk)
    # The picker sends `pick` too, so unticking every box means "no input columns".
    if "columns" in request.GET or "pick" in request.GET:
        wanted = set(request.GET.getlist("columns"))
        picked = [c for c in batch.columns if c in wanted]
        request.session[key] = picked
        return picked
    stored = request.session.get(key)
    if isinstance(stored, list):
        return [c for c in batch.columns if c in stored]
    return list(batch.columns[:DEFAULT_INPUT_COLUMNS])


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


@dataclass(frozen=True)
class SourceLink:
    title: str
    uri: str
    href: str  # "" unless the URI is http(s): nothing else becomes a link


def source_links(stored: object) -> list[SourceLink]:
    """A grounded row's sources as the page shows them (escaped by the template)."""
    links = []
    for item in stored if isinstance(stored, list) else []:
        if not isinstance(item, dict) or not item.get("uri"):
            continue
        uri, title = str(item["uri"]), str(item.get("title") or "")
        try:
            scheme = urlsplit(uri).scheme.lower()
        except ValueError:
            scheme = ""
        links.append(SourceLink(title or uri, uri, uri if scheme in ("http", "https") else ""))
    return links


def decorate(rows: list[BatchResult], columns: list[str],
             answers: list[ResultColumn]) -> list[BatchResult]:
    """Give each row the cells the templates show."""
    for row in rows:
        values = row.input if isinstance(row.input, dict) else {}
        row.input_cells = [Cell(c, _clip(format_value(values.get(c)))) for c in columns]
        row.answer_cells = []
        for col in answers:
            text = format_value(col.value(row))
            is_long = col.long_text and (len(text) > LONG_OUTPUT_CHARS or text.count("\n") > 4)
            head = text[:120].split("\n", 1)[0] if is_long else ""
            row.answer_cells.append(Cell(col.header, text, is_long, head))
        row.source_links = source_links(row.sources)
    return rows


def _base_rows(batch: Batch):
    return batch.results.order_by("index").defer("prompt", "claim_token", "lease_expires_at")


def search_query(request: HttpRequest, param: str = "q") -> tuple[str, str]:
    """The page's search text and, when it cannot be used, why. `param` names where it comes
    from: `q` on the page, `view_q` on the progress poll (the search of the page polling)."""
    query = request.GET.get(param, "").strip()
    if len(query) > SEARCH_MAX_CHARS:
        return "", f"Search text is limited to {SEARCH_MAX_CHARS} characters."
    if "\x00" in query:
        return "", "Search text cannot contain NUL characters."
    return query, ""


def results_page(request: HttpRequest, batch: Batch, counts: dict[str, int], status: str,
                 number: int) -> ResultsPage:
    query, search_error = search_query(request)
    rows = _base_rows(batch)
    if query:
        # Searched rows are counted per status (one query scoped to the batch) and paged by
        # OFFSET.
        counts = searched_counts(batch, query)
        if status != "all":
            rows = rows.filter(status=status)
        rows = rows.search(query)
    # The page count comes from the per-status counts: no COUNT(*) over a huge batch.
    total = sum(counts.values()) if status == "all" else counts.get(status, 0)
    num_pages = max(1, ceil(total / RESULTS_PAGE_SIZE))
    number = min(number, num_pages)
    start = (number - 1) * RESULTS_PAGE_SIZE
    if query:
        rows = rows[start:start + RESULTS_PAGE_SIZE]
    elif status == "all":
        # Row indexes run 0..n-1 without gaps, so a page is an index range rather than an OFFSET.
        rows = rows.filter(index__gte=start, index__lt=start + RESULTS_PAGE_SIZE)
    else:
        rows = rows.filter(status=status)[start:start + RESULTS_PAGE_SIZE]
    columns = shown_columns(request, batch)
    answers = answer_columns(batch)
    return ResultsPage(status, number, num_pages, total, decorate(list(rows), columns, answers),
                       input_columns=columns,
                       hidden_columns=[c for c in batch.columns if c not in columns],
                       answer_headers=[a.header for a in answers], query=query,
                       search_error=search_error, counts=counts)


def searched_counts(batch: Batch, query: str, *, fresh: bool = True) -> dict[str, int]:
    """Rows per status among the batch's rows that match the search. No index serves it (on a
    million-row batch it reads every row: docs/search.md), so the progress poll (`fresh=False`)
    takes them up to SEARCH_COUNTS_CACHE_S old."""
    # created_at too: SQLite may give a deleted batch's id to a new one (another user's).
    digest = hashlib.sha256(query.encode()).hexdigest()[:32]
    key = f"search-counts:{batch.pk}:{batch.created_at.timestamp()}:{digest}"
    if not fresh and (cached := cache.get(key)) is not None:
        return cached
    found = dict(batch.results.order_by().search(query).values_list("status")
                 .annotate(n=Count("id")).values_list("status", "n"))
    counts = {status: found.get(status, 0) for status in BatchResult.Status.values}
    cache.set(key, counts, SEARCH_COUNTS_CACHE_S)
    return counts


def parse_seen(raw: str) -> dict[int, str]:
    """"12:pending,13:running" (what the page shows) -> {12: "pending", 13: "running"}."""
    seen: dict[int, str] = {}
    for part in raw.split(",")[:SEEN_MAX]:
        index, _, status = part.partition(":")
        if index.isdigit() and status in BatchResult.Status.values:
            seen[int(index)] = status
    return seen


def changed_rows(request: HttpRequest, batch: Batch, seen: dict[int, str]) -> list[BatchResult]:
    """The rows the page shows whose status moved on since it last looked."""
    if not seen:
        return []
    rows = [r for r in _base_rows(batch).filter(index__in=list(seen)) if seen[r.index] != r.status]
    return decorate(rows, shown_columns(request, batch), answer_columns(batch))
