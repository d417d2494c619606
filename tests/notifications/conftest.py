import pytest

from tests.helpers.receiver import Receiver


@pytest.fixture
def receiver(settings):
    """A local receiver; WEBHOOK_ALLOW_PRIVATE lets deliveries reach 127.0.0.1."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver() as server:
        yield server


@pytest.fixture
def no_tasks(monkeypatch):
    """Record the deliveries that would be enqueued instead of writing to the task queue."""
    calls: list[int] = []
    monkeypatch.setattr("batches.notifications.models.enqueue", calls.extend)
    return calls
