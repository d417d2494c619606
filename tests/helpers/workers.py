"""Real `manage.py qcluster` processes against the current test database, for process tests.

    from tests.helpers.workers import qclusters, wait_for_batch  # fixtures: qclusters

    def test_x(qclusters, fake_server):
        cluster = qclusters.start(fake_server.url)
        ...
        wait_for_batch(batch.pk, timeout=60, clusters=[cluster])

The test must use `@pytest.mark.django_db(transaction=True)` so that the workers see its rows.
Each cluster runs in its own process group; `.kill()` SIGKILLs the group (a crashed host),
`.terminate()` SIGTERMs it (systemd/`kill 0` style) and waits for its workers to exit. The
fixture kills whatever is still running at teardown, before the test database is flushed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings

from batches.bench.procs import database_url, group_members
from batches.models import Batch

MANAGE = Path(settings.BASE_DIR) / "manage.py"
LEASE_SECONDS = 4
SLICE_SECONDS = 5


def worker_env(gemini_url: str, **extra: str | int | float) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": database_url(),
        "GEMINI_BASE_URL": gemini_url,
        "GEMINI_API_KEY": "test-key",
        "BATCH_LEASE_SECONDS": str(LEASE_SECONDS),
        "BATCH_SLICE_SECONDS": str(SLICE_SECONDS),
        "BATCH_RETRY_BASE_S": "0.05",
        "Q_WORKERS": "2",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    })
    # Same broker settings (REDIS_URL) and cluster name as this process: the name is the queue.
    # With the default ORM broker the queue lives in the per-process test database, so test
    # sessions running side by side cannot take each other's tasks; with REDIS_URL set they can.
    env.update({k: str(v) for k, v in extra.items()})
    return env


class QCluster:
    """One `manage.py qcluster` process group."""

    def __init__(self, gemini_url: str, **env: str | int | float) -> None:
        self.survivors: list[str] = []
        self.log = tempfile.NamedTemporaryFile(prefix="qcluster-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, str(MANAGE), "qcluster"],
            cwd=settings.BASE_DIR,
            env=worker_env(gemini_url, **env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so signals reach every worker
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: no cleanup of any kind, like a lost machine."""
        self._signal(signal.SIGKILL)
        self.process.wait(10)
        time.sleep(0.2)  # let the orphaned workers' deaths land

    def terminate(self, timeout: float = 20) -> bool:
        """SIGTERM the whole group; True if every worker exited within `timeout`.

        django-q2 1.11's main process can hang for ever after a group SIGTERM (it waits on an
        Event whose other side, the sentinel, died of the same signal), so once only the main
        process is left it is killed here; the workers are what hold rows."""
        self._signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None and not self._group_alive():
                return True
            if self._survivors(exclude_main=True) == []:
                self.kill()
                return True
            time.sleep(0.1)
        self.survivors = self._survivors()
        self.kill()
        return False

    def output(self) -> str:
        survivors = self.survivors or self._survivors()
        text = Path(self.log.name).read_text(errors="replace")
        return text + ("\nstill running:\n" + "\n".join(survivors) if survivors else "")

    def _survivors(self, exclude_main: bool = False) -> list[str]:
        main = self.process.pid
        return [f"{pid} {_state(pid)} {_cmdline(pid)}" for pid in group_members(main)
                if _state(pid) not in ("Z", None) and not (exclude_main and pid == main)]

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # Zombies of the group count as gone.
        return any(_state(pid) not in ("Z", None) for pid in group_members(self.process.pid))

    def close(self) -> None:
        if self._group_alive() or self.alive:
            self._signal(signal.SIGKILL)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _state(pid: int) -> str | None:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


class QClusters:
    def __init__(self) -> None:
        self.started: list[QCluster] = []

    def start(self, gemini_url: str, **env: str | int | float) -> QCluster:
        cluster = QCluster(gemini_url, **env)
        self.started.append(cluster)
        return cluster

    def logs(self) -> str:
        return "\n".join(f"--- qcluster {c.process.pid} ---\n{c.output()[-4000:]}"
                         for c in self.started)

    def close(self) -> None:
        for cluster in self.started:
            cluster.close()


@pytest.fixture
def qclusters(settings):
    """Start clusters with `qclusters.start(url)`; this process gets the workers' lease and
    slice settings too, so rescue() called here judges their leases and heartbeats rightly."""
    settings.BATCH_LEASE_SECONDS = LEASE_SECONDS
    settings.BATCH_SLICE_SECONDS = SLICE_SECONDS
    clusters = QClusters()
    yield clusters
    clusters.close()


def wait_for_batch(batch_id: int, timeout: float = 60, *, clusters: QClusters | None = None,
                   until=None, poll: float = 0.2, tick=None) -> Batch:
    """Poll until the batch is finished (or `until(batch)` is true); `tick()` runs each poll."""
    end = time.monotonic() + timeout
    while True:
        batch = Batch.objects.get(pk=batch_id)
        if (until(batch) if until else batch.is_finished):
            return batch
        if time.monotonic() > end:
            logs = clusters.logs() if clusters else ""
            raise AssertionError(f"batch {batch_id} is {batch.status} after {timeout} s: "
                                 f"{batch.status_counts()}\n{logs}")
        if tick is not None:
            tick()
        time.sleep(poll)
