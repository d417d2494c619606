import io
import time

import pytest
from django.core.management import CommandError
from django.utils import timezone

from batches import cli
from batches.fake_gemini import FakeGemini
from batches.models import Batch, BatchResult
from tests.helpers import cli as cli_helpers
from tests.helpers import workers

admin_user = cli_helpers.admin_user
run = cli_helpers.run


@pytest.fixture
def rows_csv(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,stars\ngreat,5\nawful,1\n\"so, so\",3\n", encoding="utf-8")
    return path



def finish_rows(batch, failed=()):
    """What workers would do: every row answered (some failed), then the batch finalised."""
    now = timezone.now()
    batch.results.exclude(index__in=failed).update(status="succeeded", output="ok",
                                                   finished_at=now)
    batch.results.filter(index__in=failed).update(status="failed", error="Blocked: SAFETY",
                                                  finished_at=now)
    batch.finalise_if_done()


class FakeSleep:
    """Stands in for the wait loop's sleep: the n-th call runs the n-th action (None: nothing)."""

    def __init__(self, *actions):
        self.actions = list(actions)
        self.calls = 0

    def __call__(self, seconds):
        self.calls += 1
        if self.calls > 50:
            raise AssertionError("the wait loop did not stop")
        if self.calls <= len(self.actions) and self.actions[self.calls - 1]:
            self.actions[self.calls - 1]()


def wait_on(monkeypatch, sleep):
    monkeypatch.setattr(cli.Waiter, "sleep", staticmethod(sleep))


# --- batch_run ------------------------------------------------------------------------------

def test_batch_run_creates_the_batch_with_its_rows_and_prints_its_id(admin_user, rows_csv):
    out = run("batch_run", str(rows_csv), "--prompt", "Rate {{text}} ({{stars}})",
              "--name", "Reviews", "--concurrency", "4", "--max-retries", "1",
              "--priority", "high", "--temperature", "0.5", "--system-instruction", "Be brief.")
    batch = Batch.objects.get()
    assert f"Created batch {batch.pk} (3 rows) from reviews.csv." in out
    assert (batch.owner, batch.name, batch.concurrency, batch.max_retries, batch.priority,
            batch.temperature, batch.system_instruction) == (
        admin_user, "Reviews", 4, 1, 0, 0.5, "Be brief.")
    assert list(batch.results.order_by("index").values_list("prompt", flat=True)) == [
        "Rate great (5)", "Rate awful (1)", "Rate so, so (3)"]


def test_batch_run_uses_the_owner_given(admin_user, user, rows_csv):
    run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--owner", "alice",
        "--conversation-column", "stars", "--model", "gemini-2.5-pro")
    batch = Batch.objects.get()
    assert (batch.owner, batch.model_name, batch.conversation_column) == (
        user, "gemini-2.5-pro", "stars")
    with pytest.raises(CommandError, match="There is no user 'nobody'"):
        run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--owner", "nobody")


def test_batch_run_takes_an_openai_compatible_model_and_refuses_an_unlisted_one(
        admin_user, rows_csv, settings):
    settings.OPENAI_MODELS = ["gpt-4o-mini"]
    run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--model", "gpt-4o-mini")
    assert Batch.objects.get().model_name == "gpt-4o-mini"
    with pytest.raises(CommandError) as err:
        run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--model", "gpt-5-unlisted")
    assert str(err.value).startswith("--model: Unknown model 'gpt-5-unlisted'")
    assert "gpt-4o-mini" in str(err.value) and err.value.returncode == 2
    with pytest.raises(CommandError, match="--thinking: Thinking 'low' is not available"):
        run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--model", "gpt-4o-mini",
            "--thinking", "low")
    assert Batch.objects.count() == 1


def test_batch_run_without_an_owner_says_how_to_get_one(db, rows_csv):
    with pytest.raises(CommandError) as err:
        run("batch_run", str(rows_csv), "--prompt", "{{text}}")
    assert str(err.value) == ("No owner: pass --owner USER or create a superuser "
                              "(python manage.py ensure_admin)")
    assert err.value.returncode == 2


def test_batch_run_names_the_placeholder_that_is_not_a_column(admin_user, rows_csv):
    with pytest.raises(CommandError) as err:
        run("batch_run", str(rows_csv), "--prompt", "Rate {{txt}}")
    assert str(err.value).startswith("--prompt: {{txt}} is not a column")
    assert err.value.returncode == 2
    assert not Batch.objects.exists()


def test_batch_run_names_the_file_and_line_of_a_bad_row(admin_user, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,stars\nfine,1\ntoo,many,fields\n", encoding="utf-8")
    with pytest.raises(CommandError) as err:
        run("batch_run", str(path), "--prompt", "{{text}}")
    assert str(err.value).startswith(f"{path}: Line 3")
    assert err.value.returncode == 2
    assert not Batch.objects.exists() and not BatchResult.objects.exists()


def test_batch_run_reads_the_sheet_given_from_a_workbook(admin_user, tmp_path):
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.append(["text"])
    workbook.active.append(["first sheet"])
    second = workbook.create_sheet("Second")
    second.append(["text"])
    second.append(["second sheet"])
    path = tmp_path / "book.xlsx"
    workbook.save(path)
    run("batch_run", str(path), "--prompt", "{{text}}", "--sheet", "Second")
    assert list(BatchResult.objects.values_list("prompt", flat=True)) == ["second sheet"]


def test_batch_run_reports_a_missing_file_and_a_bad_setting(admin_user, rows_csv, tmp_path):
    with pytest.raises(CommandError, match="Cannot read .*missing.csv: No such file"):
        run("batch_run", str(tmp_path / "missing.csv"), "--prompt", "{{text}}")
    with pytest.raises(CommandError, match="^--concurrency: Concurrency must be between"):
        run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--concurrency", "0")


def test_batch_run_wait_exits_0_when_every_row_succeeded(admin_user, rows_csv, monkeypatch,
                                                         settings):
    settings.BATCH_CLI_STALL_SECONDS = 3600
    wait_on(monkeypatch, FakeSleep(None, lambda: finish_rows(Batch.objects.get())))
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--wait", stdout=out)
    assert exit_.value.code == 0
    text = out.getvalue()
    assert "3 succeeded, 0 failed, 0 cancelled of 3 rows" in text
    assert f"Batch {Batch.objects.get().pk} completed" in text
    assert cli.NOT_MOVING_HINT not in text


def test_batch_run_wait_exits_1_when_a_row_failed(admin_user, rows_csv, monkeypatch, settings):
    settings.BATCH_CLI_PLAIN_EVERY_SECONDS = 0
    wait_on(monkeypatch, FakeSleep(lambda: finish_rows(Batch.objects.get(), failed=[1])))
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--wait", stdout=out)
    assert exit_.value.code == 1
    text = out.getvalue()
    assert "2 succeeded, 1 failed" in text
    assert "Last error: row 1: Blocked: SAFETY" in text
    # Not a terminal: plain progress lines, no carriage returns.
    assert "0/3 processed, 0 failed" in text and "\r" not in text
    assert "batch_retry_failed" in text


def test_batch_run_wait_says_once_when_nothing_moves(admin_user, rows_csv, monkeypatch,
                                                     settings):
    settings.BATCH_CLI_STALL_SECONDS = 0.05
    pause = lambda: time.sleep(0.06)  # noqa: E731
    wait_on(monkeypatch, FakeSleep(pause, pause, pause, lambda: finish_rows(Batch.objects.get())))
    out = io.StringIO()
    with pytest.raises(SystemExit):
        run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--wait", stdout=out)
    assert out.getvalue().count(cli.NOT_MOVING_HINT) == 1


def test_batch_run_wait_does_not_complain_while_a_worker_beats(admin_user, rows_csv, monkeypatch,
                                                               settings):
    settings.BATCH_CLI_STALL_SECONDS = 0.05

    def beat():
        # A worker busy with slow rows: nothing finishes, but its slice renews the heartbeat.
        time.sleep(0.06)
        Batch.objects.update(slice_heartbeat_at=timezone.now())

    wait_on(monkeypatch, FakeSleep(beat, beat, beat, lambda: finish_rows(Batch.objects.get())))
    out = io.StringIO()
    with pytest.raises(SystemExit):
        run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--wait", stdout=out)
    assert cli.NOT_MOVING_HINT not in out.getvalue()


def test_batch_run_wait_redraws_one_line_on_a_terminal(admin_user, rows_csv, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    def one_row():
        Batch.objects.get().results.filter(index=0).update(status="succeeded",
                                                           finished_at=timezone.now())

    sleep = FakeSleep(one_row, None, lambda: finish_rows(Batch.objects.get()))
    wait_on(monkeypatch, sleep)
    out = Terminal()
    with pytest.raises(SystemExit) as exit_:
        run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--wait", stdout=out)
    assert exit_.value.code == 0
    text = out.getvalue()
    assert "\r[" in text
    assert "1/3 processed" in text and "3/3 processed" in text
    progress = text[text.index("\r["):text.index("Batch ")]
    assert progress.count("\n") == 1  # every redraw on the same line, one newline at the end


def test_batch_run_wait_stops_when_the_batch_is_deleted(admin_user, rows_csv, monkeypatch):
    wait_on(monkeypatch, FakeSleep(lambda: Batch.objects.all().delete()))
    with pytest.raises(CommandError, match=r"Batch \d+ was deleted"):
        run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--wait")


def test_ctrl_c_stops_waiting_and_leaves_the_batch_running(admin_user, rows_csv, monkeypatch):
    def interrupt():
        raise KeyboardInterrupt

    wait_on(monkeypatch, FakeSleep(interrupt))
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        run("batch_run", str(rows_csv), "--prompt", "{{text}}", "--wait", stdout=out)
    batch = Batch.objects.get()
    assert exit_.value.code == 130
    assert (f"Stopped waiting; batch {batch.pk} keeps running. Check on it with: "
            f"python manage.py batch_status {batch.pk}") in out.getvalue()
    assert batch.status == "pending" and not batch.cancel_requested


# --- batch_status and the actions -----------------------------------------------------------

def test_batch_status_prints_the_figures(make_batch):
    batch = make_batch(rows=[{"text": str(i)} for i in range(4)], name="Reviews")
    batch.results.filter(index=0).update(status="succeeded", finished_at=timezone.now())
    batch.results.filter(index=1).update(status="failed", error="Quota exceeded",
                                         finished_at=timezone.now())
    Batch.objects.filter(pk=batch.pk).update(prompt_tokens=1200, output_tokens=345)
    out = run("batch_status", str(batch.pk))
    assert f"Batch {batch.pk}: Reviews" in out
    assert "Status:    pending, priority normal" in out
    assert "4 total: 1 succeeded, 1 failed, 0 cancelled, 2 pending, 0 running" in out
    assert "Progress:  50.0%" in out
    assert "Rate:" in out and "ETA:" in out
    assert "Tokens:    1,200 prompt + 345 output = 1,545" in out
    assert "Last error: row 1: Quota exceeded" in out


@pytest.mark.parametrize("command", ["batch_status", "batch_cancel", "batch_pause",
                                     "batch_resume", "batch_retry_failed"])
def test_an_unknown_batch_id_is_an_error(db, command):
    with pytest.raises(CommandError, match="There is no batch 999"):
        run(command, "999")
    with pytest.raises(CommandError, match="'abc' is not a batch id"):
        run(command, "abc")


def test_batch_cancel_cancels_the_pending_rows(make_batch, django_capture_on_commit_callbacks):
    batch = make_batch()
    batch.results.filter(index=0).update(status="running")
    out = run("batch_cancel", str(batch.pk))
    assert out.startswith(f"Cancelled batch {batch.pk}: 2 rows cancelled before they ran")
    assert list(batch.results.order_by("index").values_list("status", flat=True)) == [
        "running", "cancelled", "cancelled"]
    batch.results.filter(index=0).update(status="succeeded")
    batch.finalise_if_done()
    with pytest.raises(CommandError, match=f"Batch {batch.pk}: The batch is already cancelled"):
        run("batch_cancel", str(batch.pk))


def test_batch_pause_and_resume(make_batch, django_capture_on_commit_callbacks):
    batch = make_batch()
    assert f"Paused batch {batch.pk}: 3 rows wait to run" in run("batch_pause", str(batch.pk))
    batch.refresh_from_db()
    assert batch.paused and batch.status == "paused"
    with pytest.raises(CommandError, match="Only a pending or running batch can be paused"):
        run("batch_pause", str(batch.pk))
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        out = run("batch_resume", str(batch.pk))
    assert out.startswith(f"Resumed batch {batch.pk}")
    batch.refresh_from_db()
    assert not batch.paused and batch.status == "pending"
    assert len(enqueued) == 1


def test_batch_retry_failed_sends_only_failed_rows_back(make_batch,
                                                        django_capture_on_commit_callbacks):
    batch = make_batch()
    batch.results.filter(index=0).update(status="failed", error="boom", attempts=4)
    batch.results.filter(index=1).update(status="succeeded")
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        out = run("batch_retry_failed", str(batch.pk))
    assert out.startswith(f"Batch {batch.pk}: 1 failed row back to pending")
    assert list(batch.results.order_by("index").values_list("status", "attempts")) == [
        ("pending", 0), ("succeeded", 0), ("pending", 0)]
    assert len(enqueued) == 1
    with pytest.raises(CommandError, match="no failed rows to retry"):
        run("batch_retry_failed", str(batch.pk))


# --- end to end -----------------------------------------------------------------------------

@pytest.fixture
def qclusters():
    clusters = workers.QClusters()
    yield clusters
    clusters.close()


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_batch_run_wait_finishes_every_row_with_a_real_qcluster(qclusters, tmp_path, settings,
                                                                django_user_model):
    django_user_model.objects.create_superuser("root", password=None)
    path = tmp_path / "many.csv"
    path.write_text("text\n" + "".join(f"line {i}\n" for i in range(120)), encoding="utf-8")
    settings.BATCH_CLI_POLL_SECONDS = 0.1
    out = io.StringIO()
    with FakeGemini(latency_ms=10, jitter_ms=5) as fake:
        qclusters.start(fake.url)
        with pytest.raises(SystemExit) as exit_:
            run("batch_run", str(path), "--prompt", "Echo {{text}}", "--concurrency", "16",
                "--wait", stdout=out)
        assert exit_.value.code == 0, out.getvalue() + qclusters.logs()
        assert fake.stats.total == 120
    batch = Batch.objects.get()
    assert batch.status == Batch.Status.COMPLETED
    assert list(batch.results.order_by("index").values_list("output", flat=True)) == [
        f"ECHO: Echo line {i}" for i in range(120)]
    assert f"Batch {batch.pk} completed: 120 succeeded, 0 failed" in out.getvalue()
