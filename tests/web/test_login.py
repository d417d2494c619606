"""Log-in attempts are limited (django-axes) on the site's page and the admin's alike."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def attempt(path: str, username: str, password: str, address: str = "10.0.0.1"):
    return Client(REMOTE_ADDR=address).post(path, {"username": username, "password": password})


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_repeated_failures_lock_the_username_out_from_that_address(path, staff_user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(path, "carol", "wrong").status_code == 200  # the form, with its error
    locked = attempt(path, "carol", "wrong")
    assert locked.status_code == 429
    assert "Too many failed log-ins" in locked.content.decode()
    # Now even the right password is refused from there, for the cool-off time.
    assert attempt(path, "carol", "pw-carol-123").status_code == 429
    # The same username from another address is not locked.
    assert attempt(path, "carol", "pw-carol-123", address="10.0.0.2").status_code == 302


def test_a_successful_log_in_resets_the_count(user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt("/login/", "alice", "wrong")
    assert attempt("/login/", "alice", "pw-alice-123").status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt("/login/", "alice", "wrong").status_code == 200
