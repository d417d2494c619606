"""CI must fail, not skip, when a service is missing, and run the tests it says it runs."""

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import services

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_service_fails_the_test_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="a missing service fails the run"):
        services.missing("Redis is not reachable")


def test_a_missing_service_skips_the_test_elsewhere(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        services.missing("Redis is not reachable")


def make_dry_run(*args: str) -> str:
    return subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def test_markers_narrow_test_fast_instead_of_replacing_its_exclusions():
    assert '-m "not browser and not faults"' in make_dry_run("test-fast")
    assert ('-m "not browser and not faults and (database)"'
            in make_dry_run("test-fast", "MARKERS=database"))


def test_ci_sets_ci_starts_redis_and_keeps_the_fast_exclusions():
    script = (ROOT / ".ci" / "run").read_text()
    assert "export CI=true" in script
    assert "redis-server --daemonize yes" in script
    assert 'PYTEST_ARGS="-m' not in script
    assert "MARKERS=database make test-fast" in script


def test_one_rule_finds_chromium_for_make_the_tests_and_the_screenshots():
    from batches.management.commands import screenshots

    assert "command -v chromium" in (ROOT / "Makefile").read_text()
    assert screenshots.CHROMIUM == "chromium"  # looked up on the PATH with shutil.which
    assert services.chromium_path() == shutil.which("chromium")


def test_the_development_targets_turn_debug_on():
    for target in ("run", "demo", "test", "test-fast"):
        assert "DEBUG=true" in make_dry_run(target), target


def test_make_test_runs_the_others_in_parallel_then_the_serial_tests_alone():
    pytest_lines = [line for line in make_dry_run("test").splitlines() if "bin/pytest" in line]
    assert len(pytest_lines) == 2, pytest_lines
    parallel, serial = pytest_lines
    assert '-n 4 --dist worksteal -m "not serial and not browser"' in parallel  # the default
    assert '-m "serial or browser"' in serial and " -n " not in serial
    # TEST_WORKERS=1: one process, nothing else changes.
    single = [line for line in make_dry_run("test", "TEST_WORKERS=1").splitlines()
              if "bin/pytest" in line]
    assert " -n " not in single[0] and '-m "not serial and not browser"' in single[0]
