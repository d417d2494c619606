"""What the batch management commands share: finding the batch, printing figures, waiting."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from batches import costs, services
from batches.models import Batch, BatchResult, Progress, RowTally

NOT_MOVING_HINT = ("Nothing is moving: is a worker running? "
                   "Start one with `python manage.py qcluster`")


def get_batch(batch_id: str | int) -> Batch:
    try:
        pk = int(str(batch_id).lstrip("#"))
    except ValueError:
        raise CommandError(f"{batch_id!r} is not a batch id (a number).") from None
    batch = Batch.objects.filter(pk=pk).first()
    if batch is None:
        raise CommandError(f"There is no batch {pk}.")
    return batch


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def last_error(batch: Batch) -> str:
    """The batch's own error, else the error of the row that failed last."""
    if batch.last_error:
        return batch.last_error
    row = (BatchResult.objects.filter(batch=batch, status=BatchResult.Status.FAILED)
           .order_by("-finished_at", "-index").only("index", "error").first())
    return f"row {row.index}: {row.error}" if row else ""


def figures(batch: Batch) -> list[str]:
    """The lines batch_status prints."""
    p = Progress.for_batch(batch)
    c = p.counts
    state = batch.get_status_display().lower()
    if batch.cancel_requested and not batch.is_finished:
        state += " (cancel requested)"
    lines = [
        f"Batch {batch.pk}: {batch.display_name}",
        f"Status:    {state}, priority {batch.priority_name}, model {batch.model_name}",
        f"Mode:      {batch.mode_text}",
        f"Rows:      {p.total:,} total: {c['succeeded']:,} succeeded, {c['failed']:,} failed, "
        f"{c['cancelled']:,} cancelled, {c['pending']:,} pending, {c['running']:,} running",
        f"Progress:  {p.percent}%: {p.summary}",
        f"Rate:      {p.rows_per_minute:,} rows/min",
        f"ETA:       {'-' if batch.is_finished else duration(p.eta_seconds)}",
        f"Tokens:    {p.prompt_tokens:,} prompt + {p.output_tokens:,} output = {p.tokens:,}"
        + (f" (+ {batch.thoughts_tokens:,} thinking)" if batch.thoughts_tokens else ""),
        *spend_lines(batch, c["pending"] + c["running"]),
    ]
    if fields := batch.output_fields:
        lines.insert(2, "Output:    columns " + ", ".join(f"{f.name} ({f.label})" for f in fields))
    if batch.cached_count:
        saved = batch.saved_prompt_tokens + batch.saved_output_tokens
        lines.append(f"Cache:     {batch.cached_count:,} of {p.total:,} rows from the cache, "
                     f"{saved:,} tokens saved")
    if error := last_error(batch):
        lines.append(f"Last error: {error}")
    return lines


def spend_lines(batch: Batch, rows_left: int) -> list[str]:
    spend = costs.batch_spend(batch, rows_left)
    lines = [f"Spent:     {spend.spent_text}"
             + (f" of a {spend.budget_text} budget" if spend.budget is not None else "")]
    if rows_left:
        lines.append(f"Rest:      about {spend.rest_text} for {plural(rows_left, 'row')} left "
                     "(an estimate)")
    month = costs.user_month(batch.owner_id)
    lines.append(f"Owner:     {month.text}")
    return lines


class BatchActionCommand(BaseCommand):
    """A command that runs one service action on a batch and says what changed."""

    service: Callable[..., int]
    # Formatted with {id}, {name} and {rows}: the number of rows changed and `row_word`.
    done: str
    row_word = "row"

    def add_arguments(self, parser):
        parser.add_argument("batch_id", help="The batch's id.")

    def handle(self, *args, batch_id: str, **options):
        batch = get_batch(batch_id)
        try:
            n = type(self).service(batch=batch)
        except services.ActionNotAllowed as err:
            raise CommandError(f"Batch {batch.pk}: {err}") from err
        self.stdout.write(self.done.format(id=batch.pk, name=batch.display_name,
                                           rows=plural(n, self.row_word)))


class Waiter:
    """Polls a batch until it ends, drawing a progress line: redrawn in place on a terminal,
    printed every `plain_every` seconds otherwise."""

    sleep = staticmethod(time.sleep)
    RATE_WINDOW_S = 20

    def __init__(self, batch: Batch, out: OutputWrapper, *, poll: float | None = None,
                 stall_after: float | None = None, plain_every: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.batch = batch
        self.out = out
        self.poll = poll if poll is not None else getattr(settings, "BATCH_CLI_POLL_SECONDS", 1.0)
        self.stall_after = (stall_after if stall_after is not None
                            else getattr(settings, "BATCH_CLI_STALL_SECONDS", 15.0))
        self.plain_every = (plain_every if plain_every is not None
                            else getattr(settings, "BATCH_CLI_PLAIN_EVERY_SECONDS", 10.0))
        self.clock = clock
        self.tty = out.isatty()
        self.samples: deque[tuple[float, int]] = deque()
        self.started = clock()

    def wait(self) -> Batch:
        last_signs: tuple | None = None
        last_change = last_print = self.clock()
        hinted = False
        while True:
            try:
                self.batch.refresh_from_db()
            except Batch.DoesNotExist:
                raise CommandError(f"Batch {self.batch.pk} was deleted.") from None
            counts = self.batch.status_counts()
            now = self.clock()
            # A slice renewing its heartbeat is a live worker even while its rows take long.
            signs = (counts, self.batch.slice_heartbeat_at)
            if signs != last_signs:
                last_signs, last_change = signs, now
            done = RowTally(counts).processed
            self._sample(now, done)
            if self.batch.is_finished:
                self._draw(counts, done, final=True)
                return self.batch
            if self.tty or now - last_print >= self.plain_every:
                self._draw(counts, done)
                last_print = now
            waiting = self.batch.status == Batch.Status.PAUSED
            if not hinted and not waiting and now - last_change >= self.stall_after:
                self._say(NOT_MOVING_HINT)
                hinted = True
            self.sleep(self.poll)

    def _sample(self, now: float, done: int) -> None:
        samples = self.samples
        samples.append((now, done))
        while len(samples) > 2 and now - samples[0][0] > self.RATE_WINDOW_S:
            samples.popleft()
        # Idle time before the first row finished (no worker yet) is not part of the rate.
        while len(samples) > 2 and samples[1][1] == samples[0][1]:
            samples.popleft()

    def rate(self) -> float:
        """Rows finished per second over the last few seconds."""
        if len(self.samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    def line(self, counts: dict[str, int], done: int) -> str:
        tally = RowTally(counts)
        total, percent = tally.total, tally.percent
        width = 24
        filled = int(width * percent / 100)
        bar = "#" * filled + "-" * (width - filled)
        rate = self.rate()
        remaining = counts["pending"] + counts["running"]
        eta = duration(remaining / rate) if rate > 0 else "-"
        state = "" if self.batch.status != Batch.Status.PAUSED else " (paused)"
        cancelled = f", {tally.cancelled:,} cancelled" if tally.cancelled else ""
        return (f"[{bar}] {percent:5.1f}% {tally.processed:,}/{total:,} processed, "
                f"{counts['failed']:,} failed{cancelled}, {rate:.1f} rows/s, ETA {eta}{state}")

    def _draw(self, counts: dict[str, int], done: int, final: bool = False) -> None:
        text = self.line(counts, done)
        if self.tty:
            self.out.write(f"\r{text}\033[K", ending="\n" if final else "")
            self.out.flush()
        elif not final:
            self.out.write(text)

    def _say(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K", ending="")
        self.out.write(text)

    def summary(self) -> list[str]:
        batch = self.batch
        counts = batch.status_counts()
        total = sum(counts.values())
        elapsed = self.clock() - self.started
        lines = [
            f"Batch {batch.pk} {batch.get_status_display().lower()}: "
            f"{counts['succeeded']:,} succeeded, {counts['failed']:,} failed, "
            f"{counts['cancelled']:,} cancelled of {total:,} rows in {duration(elapsed)}.",
            f"Tokens: {batch.prompt_tokens:,} prompt + {batch.output_tokens:,} output.",
        ]
        if counts["failed"] or counts["cancelled"] or batch.status == Batch.Status.FAILED:
            if error := last_error(batch):
                lines.append(f"Last error: {error}")
            lines.append(f"Retry the failed rows: python manage.py batch_retry_failed {batch.pk}")
        return lines


def all_succeeded(batch: Batch) -> bool:
    counts = batch.status_counts()
    return batch.status == Batch.Status.COMPLETED and counts["succeeded"] == sum(counts.values())
