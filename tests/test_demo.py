import subprocess
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import call_command

from batches.models import Batch

ROOT = Path(__file__).resolve().parent.parent


def test_demo_setup_creates_the_demo_user_and_one_example_batch(db, capsys):
    call_command("demo_setup")
    user = get_user_model().objects.get(username="demo")
    assert user.check_password("demo")
    batch = Batch.objects.get(owner=user)
    assert batch.total_rows == 20
    assert batch.columns == ["product", "rating", "review"]
    first = batch.results.get(index=0)
    assert "Trail running shoes (5 stars)" in first.prompt
    assert [f.name for f in batch.output_fields] == ["sentiment", "score", "reasons"]
    assert "log in at http://127.0.0.1:8000/ as 'demo'" in capsys.readouterr().out


def test_demo_setup_is_idempotent(db):
    call_command("demo_setup")
    call_command("demo_setup")
    assert get_user_model().objects.filter(username="demo").count() == 1
    assert Batch.objects.count() == 1


def test_make_demo_runs_the_demo_model_a_worker_and_the_web_server_on_its_own_database():
    plan = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert "DEMO_MODE=true" in plan
    assert "demo.sqlite3" in plan
    assert "GEMINI_BASE_URL=http://127.0.0.1:8765" in plan
    for step in ("migrate", "demo_setup", "fake_gemini --port 8765", "qcluster", "runserver"):
        assert step in plan
    # The second provider's demo model, on the fake OpenAI-compatible server.
    assert "fake_openai --port 8766" in plan
    assert "OPENAI_BASE_URL=http://127.0.0.1:8766/v1" in plan and "OPENAI_MODELS=" in plan
