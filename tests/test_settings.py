"""Safe defaults: DEBUG is off unless asked for, and production settings pass check --deploy."""

import os
import secrets
import subprocess
import sys

from django.conf import settings

MANAGE = [sys.executable, str(settings.BASE_DIR / "manage.py")]


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE"}}
    return subprocess.run([*MANAGE, *args], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60, cwd=settings.BASE_DIR)


def test_without_debug_or_a_secret_key_start_up_fails_saying_how_to_set_one():
    result = run_manage("check")
    assert result.returncode != 0
    assert "SECRET_KEY is not set, and DEBUG is off" in result.stderr
    assert "export SECRET_KEY=" in result.stderr


def test_debug_is_off_by_default_and_the_documented_production_settings_pass_check_deploy():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING",
                        SECRET_KEY=secrets.token_urlsafe(50),
                        ALLOWED_HOSTS="batches.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    shell = run_manage("shell", "-c", "from django.conf import settings; print(settings.DEBUG)",
                       SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="x.example.com")
    assert shell.stdout.strip().endswith("False"), shell.stderr
