"""Re-take the README's screenshots: a throwaway demo (its own SQLite file, the demo model, a
worker and a web server) driven by Playwright in Debian's Chromium."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from batches.bench.procs import free_port

# One rule with `make chromium` and the browser tests: `chromium` on the PATH.
CHROMIUM = "chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


def wait_until_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 (loopback only)
            return
        except OSError:
            time.sleep(0.2)
    raise CommandError(f"{url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Command(BaseCommand):
    help = "Take docs/dashboard.png and docs/batch.png in a throwaway demo."

    def add_arguments(self, parser):
        parser.add_argument("--out", default=str(Path(settings.BASE_DIR) / "docs"))

    def handle(self, *args, out: str, **options):
        self.chromium = shutil.which(CHROMIUM)
        if self.chromium is None:
            raise CommandError("chromium is not on the PATH: install it with `make chromium`")
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        web_port, model_port = free_port(), free_port()
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            env = dict(os.environ, DEMO_MODE="true", DEBUG="true",
                       DATABASE_URL=f"sqlite:///{tmp}/demo.sqlite3",
                       GEMINI_BASE_URL=f"http://127.0.0.1:{model_port}",
                       GEMINI_API_KEY="demo-key")
            env.pop("REDIS_URL", None)

            def start(*argv: str) -> None:
                proc = subprocess.Popen([*manage, *argv], env=env, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                stack.callback(stop, proc)

            subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True,
                           capture_output=True)
            subprocess.run([*manage, "demo_setup"], env=env, check=True, capture_output=True)
            start("fake_gemini", "--port", str(model_port), "--latency-ms", "1500",
                  "--jitter-ms", "500", "--error-rate", "0", "--demo-answers")
            start("runserver", "--noreload", f"127.0.0.1:{web_port}")
            base = f"http://127.0.0.1:{web_port}"
            wait_until_up(f"{base}/login/")
            start("qcluster")
            self._shoot(base, out_dir)
        self.stdout.write(self.style.SUCCESS(f"Saved {out_dir}/dashboard.png and batch.png"))

    def _shoot(self, base: str, out_dir: Path) -> None:
        from playwright.sync_api import expect, sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=self.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(f"{base}/login/")
            page.fill("#id_username", "demo")
            page.fill("#id_password", "demo")
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            # Wait until the example batch is visibly under way, then catch it running.
            expect(page.locator("body")).to_contain_text("running", timeout=30_000)
            page.wait_for_timeout(3000)
            page.screenshot(path=str(out_dir / "dashboard.png"))
            page.click("text=Product review sentiment")
            expect(page.locator("body")).to_contain_text("completed", timeout=90_000)
            page.wait_for_timeout(1500)
            # The whole page: the columns and per-field summary of structured output included.
            page.screenshot(path=str(out_dir / "batch.png"), full_page=True)
            browser.close()
