import io

import pytest
from django.contrib.auth import get_user_model

# Every browser test module's `chromium_missing` mark uses this fixture.
from tests.helpers.browser import needs_chromium  # noqa: F401


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, then: a process a failed test left behind (a qcluster, a server) may
    still hold a connection to the test database, and PostgreSQL would refuse to drop it."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The default hasher is slow by design; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def no_creation_rate(settings):
    # The creation rate counts in the shared cache, which outlives a transactional test's
    # flush; the tests of the rate itself set one.
    settings.BATCH_CREATE_RATE = ""


@pytest.fixture(autouse=True)
def clear_local_cache():
    from django.core.cache import caches

    caches["local"].clear()  # the API's live counts, per process


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path_factory):
    # Documents a test stores (also ones an API fuzzer sends) never land in the project's media/.
    settings.MEDIA_ROOT = str(tmp_path_factory.mktemp("media"))


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user("bob", password="pw-bob-123")


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user("carol", password="pw-carol-123", is_staff=True)


@pytest.fixture
def fake_gemini():
    """A Gemini-compatible server on a free loopback port (batches/fake_gemini.py)."""
    from batches.fake_gemini import FakeGemini

    with FakeGemini() as server:
        yield server


def grant_high_priority(user) -> None:
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="use_high_priority"))
    # Django caches a user's permissions on the instance.
    for attr in ("_perm_cache", "_user_perm_cache"):
        user.__dict__.pop(attr, None)


def csv_file(text: str, name: str = "rows.csv") -> io.BytesIO:
    f = io.BytesIO(text.encode("utf-8"))
    f.name = name
    return f


@pytest.fixture
def make_batch(user):
    """Create a batch through the real service, from a list of row dicts."""
    from batches.services import batch_create

    def make(rows=None, prompt="Say: {{text}}", owner=None, **kwargs):
        rows = rows if rows is not None else [{"text": f"row {i}"} for i in range(3)]
        return batch_create(owner=owner or user, prompt=prompt, rows=rows, **kwargs)

    return make


def pytest_collection_modifyitems(config, items):
    """Serial tests last: they restart PostgreSQL, which drops the test session's own database
    connection, and tests collected after them (browser tests with a live server) would
    start on a dead connection. `make test` runs them in a pytest run of their own."""
    items.sort(key=lambda item: item.get_closest_marker("serial") is not None)
