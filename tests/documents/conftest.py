from tests.helpers.documents import media, s3  # noqa: F401
from tests.helpers.engine import enqueued, fake  # noqa: F401
