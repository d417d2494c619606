from tests.helpers.documents import media  # noqa: F401
from tests.helpers.engine import enqueued, fake  # noqa: F401
