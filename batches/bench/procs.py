"""The benchmark's child processes: the fake model server, a qcluster, a web server, and a
sampler of their memory. Each runs in its own process group so that stopping it reaches every
process it forked."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from batches.fake_gemini import CONTROL_HEADER, new_control_key

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
API_KEY = "bench-key"


def database_url() -> str:
    """A DATABASE_URL naming the database this process uses (also a test database)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    if connection.vendor == "postgresql":
        auth = quote(s.get("USER") or "", safe="")
        if s.get("PASSWORD"):
            auth += ":" + quote(s["PASSWORD"], safe="")
        host = s.get("HOST") or "localhost"
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"postgres://{auth}@{host}{port}/{s['NAME']}"
    raise NotImplementedError(f"The benchmark does not know how to share a {connection.vendor} "
                              "database with its subprocesses.")


def child_env(**extra: Any) -> dict[str, str]:
    """The environment of a child: this process's database; DEBUG off as in production (DEBUG
    makes every query formatted and logged), with this process's secret key so that a session
    cookie made here is valid there."""
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1",
                "DJANGO_SETTINGS_MODULE": "batchsite.settings", "DEBUG": "false",
                "SECRET_KEY": settings.SECRET_KEY, "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SECURE_SSL_REDIRECT": "false"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of a process group."""
    ticks = 0
    for pid in group_members(pgid):
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Child:
    """One subprocess in its own process group, output to a temporary log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log",
                                               delete=False)
        self.process = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            match = re.search(pattern, self.output())
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start (wanted {pattern!r}):\n"
                           f"{self.output()[-3000:]}")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after `timeout`."""
        self._signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        while time.monotonic() < end and group_members(self.pid):
            self.process.poll()
            time.sleep(0.1)
        self._signal(signal.SIGKILL)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class FakeServer(Child):
    """`manage.py fake_gemini` on a free loopback port, steered over HTTP."""

    def __init__(self) -> None:
        self.control_key = new_control_key()
        env = {**child_env(), "FAKE_GEMINI_CONTROL_KEY": self.control_key}  # not on argv
        super().__init__("fake-gemini", [sys.executable, MANAGE, "fake_gemini", "--port", "0",
                                         "--log-limit", "100"], env)
        self.url = self.wait_for_output(r"serving on (http://\S+)", 30).group(1)

    def configure(self, **knobs: Any) -> dict:
        return self._call("POST", "/_config", knobs)

    def reset(self) -> None:
        self._call("POST", "/_reset", {})

    def stats(self) -> dict:
        return self._call("GET", "/_stats", None)

    def _call(self, method: str, path: str, body: dict | None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={CONTROL_HEADER: self.control_key})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


class Cluster(Child):
    """A real `manage.py qcluster` against the benchmark's database and the fake server."""

    def __init__(self, gemini_url: str, workers: int, **env_extra: Any) -> None:
        env = child_env(GEMINI_BASE_URL=gemini_url, GEMINI_API_KEY=API_KEY, Q_WORKERS=workers,
                        LOG_LEVEL="WARNING", **env_extra)
        super().__init__("qcluster", [sys.executable, MANAGE, "qcluster"], env)
        self.workers = workers
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        # Main process, sentinel, monitor, pusher and the workers.
        end = time.monotonic() + timeout
        while len(group_members(self.pid)) < self.workers + 3:
            if self.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"qcluster did not start:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        time.sleep(1.0)  # the workers import the app after they fork


class WebServer(Child):
    """gunicorn serving the app on a free loopback port."""

    def __init__(self, workers: int = 2, threads: int = 4, timeout: int = 30,
                 **env_extra: Any) -> None:
        self.port = free_port()
        # 30 s is gunicorn's default and the Procfile's: no benchmarked page or export may need
        # more (only scenario 8's million-row upload, which ingests inside its request).
        argv = [sys.executable, "-m", "gunicorn", "batchsite.wsgi", "--bind",
                f"127.0.0.1:{self.port}", "--workers", str(workers), "--threads", str(threads),
                "--worker-class", "gthread", "--log-level", "warning", "--timeout",
                str(timeout)]
        # DEBUG is off as in production, so the pages need the collected static files
        # (WhiteNoise's manifest); without them every page with {% static %} is a 500.
        subprocess.run([sys.executable, MANAGE, "collectstatic", "--noinput", "-v", "0"],
                       env=child_env(**env_extra), check=True, cwd=settings.BASE_DIR)
        super().__init__("gunicorn", argv, child_env(**env_extra))
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not start:\n{self.output()[-3000:]}")


class RssSampler:
    """Samples VmRSS of every process in some process groups every `interval` seconds.

    Peaks are kept per process for the whole run and for the current window (one scenario)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.groups: list[int] = []
        self.peak_kb: dict[int, int] = {}
        self.window_kb = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def watch(self, pgid: int) -> None:
        with self._lock:
            self.groups.append(pgid)

    def new_window(self) -> None:
        with self._lock:
            self.window_kb = 0

    @property
    def window_mb(self) -> float:
        return self.window_kb / 1024

    @property
    def overall_mb(self) -> float:
        return max(self.peak_kb.values(), default=0) / 1024

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            groups = list(self.groups)
        for pgid in groups:
            for pid in group_members(pgid):
                kb = rss_kb(pid)
                with self._lock:
                    self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), kb)
                    self.window_kb = max(self.window_kb, kb)
