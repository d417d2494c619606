"""The fake's Batch Mode through the real google-genai client: create (inline and from an
uploaded JSONL file), get, list, cancel, delete, the results download, and the knobs."""

from __future__ import annotations

import json
import time

import pytest
from google import genai
from google.genai import types

from batches.fake_gemini import FakeGemini

MODEL = "gemini-2.5-flash"


@pytest.fixture
def server():
    with FakeGemini() as fake:
        yield fake


def sdk(fake: FakeGemini) -> genai.Client:
    return genai.Client(api_key="k", http_options=types.HttpOptions(base_url=fake.url))


def inline(n: int) -> list[types.InlinedRequest]:
    return [types.InlinedRequest(contents=f"row {i}", metadata={"key": str(i)})
            for i in range(n)]


def wait_done(client: genai.Client, name: str, timeout: float = 5) -> types.BatchJob:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.batches.get(name=name)
        if job.done:
            return job
        time.sleep(0.02)
    raise AssertionError(f"{name} still {job.state}")


def test_an_inline_job_moves_from_pending_to_running_to_succeeded(server):
    # Phases long enough that a loaded machine (make test runs 4 processes) reads RUNNING.
    server.configure(batch_pending_s=0.5, batch_running_s=2.0)
    client = sdk(server)
    job = client.batches.create(model=MODEL, src=inline(3))
    assert job.state == types.JobState.JOB_STATE_PENDING and job.name.startswith("batches/")
    time.sleep(0.7)
    assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_RUNNING
    job = wait_done(client, job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    answers = {r.metadata["key"]: r.response.text for r in job.dest.inlined_responses}
    assert answers == {str(i): f"ECHO: row {i}" for i in range(3)}
    assert [j.name for j in client.batches.list()] == [job.name]


def test_a_file_job_answers_by_key_in_a_results_file(server, tmp_path):
    server.configure(batch_shuffle=True)
    client = sdk(server)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"key": f"k{i}", "request": {
        "contents": [{"role": "user", "parts": [{"text": f"row {i}"}]}]}}) + "\n"
        for i in range(50)))
    uploaded = client.files.upload(file=str(source),
                                   config=types.UploadFileConfig(mime_type="application/jsonl"))
    job = wait_done(client, client.batches.create(model=MODEL, src=uploaded.name).name)
    out = tmp_path / "out.jsonl"
    client.files.download(file=job.dest.file_name, destination=str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["key"] for line in lines] != [f"k{i}" for i in range(50)]  # shuffled
    assert {line["key"]: line["response"]["candidates"][0]["content"]["parts"][0]["text"]
            for line in lines} == {f"k{i}": f"ECHO: row {i}" for i in range(50)}


def test_missing_rows_and_row_errors_and_an_all_failed_job(server):
    server.configure(batch_missing_rate=0.3, batch_error_rate=0.3)
    client = sdk(server)
    job = wait_done(client, client.batches.create(model=MODEL, src=inline(100)).name)
    responses = job.dest.inlined_responses
    errors = [r for r in responses if r.error is not None]
    assert 40 < len(responses) < 90 and 5 < len(errors) < 50
    server.configure(batch_missing_rate=0, batch_error_rate=0, batch_all_failed_jobs=1)
    job = wait_done(client, client.batches.create(model=MODEL, src=inline(5)).name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert all(r.error is not None and r.error.code == 500 for r in job.dest.inlined_responses)


def test_a_stuck_job_stays_pending_and_an_expiring_job_expires(server):
    server.configure(batch_stuck_jobs=1, batch_expire_jobs=1)
    client = sdk(server)
    stuck = client.batches.create(model=MODEL, src=inline(2))
    expired = wait_done(client, client.batches.create(model=MODEL, src=inline(2)).name)
    assert expired.state == types.JobState.JOB_STATE_EXPIRED
    time.sleep(0.05)
    assert client.batches.get(name=stuck.name).state == types.JobState.JOB_STATE_PENDING


def test_cancel_keeps_what_a_running_job_answered_and_delete_removes_it(server):
    server.configure(batch_running_s=2.0)
    client = sdk(server)
    job = client.batches.create(model=MODEL, src=inline(20))
    time.sleep(0.3)
    client.batches.cancel(name=job.name)
    job = client.batches.get(name=job.name)
    assert job.state == types.JobState.JOB_STATE_CANCELLED
    assert 0 < len(job.dest.inlined_responses) < 20
    client.batches.delete(name=job.name)
    assert list(client.batches.list()) == []
    assert server.app.batches.counts["cancelled"] == 1


def test_the_engines_fast_request_lines_match_the_sdks_conversion(settings, server):
    from batches.batchmode import client as batch_client
    from batches.providers import Request, gemini

    settings.GEMINI_API_KEY, settings.GEMINI_BASE_URL = "k", server.url
    gemini.reset_provider()
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    request = Request(model=MODEL, prompt="Say: é \"x\"", history=(("q", "a"),),
                      system_instruction="Be brief.", temperature=0.2, max_output_tokens=50,
                      response_schema=schema, thinking="off")
    lines = batch_client.Lines(request)
    fast = json.loads(lines.file_line(lines.contents(request), "7"))
    assert fast == {"key": "7", "request": batch_client.request_line(request, "7")["request"]}
