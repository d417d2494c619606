from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from batches.models import Batch
from batches.services import batch_create

DEMO_CSV = Path(__file__).resolve().parents[2] / "demo" / "reviews.csv"
DEMO_PROMPT = (
    "Classify the sentiment of this review of {{product}} ({{rating}} stars), score it from 1 "
    "to 5 and list the reasons the reviewer gives.\n\nReview: {{review}}"
)
# The demo batch answers in columns (structured output), so the screenshots show them.
DEMO_FIELDS = [
    {"name": "sentiment", "type": "enum", "values": ["positive", "mixed", "negative"]},
    {"name": "score", "type": "integer", "minimum": 1, "maximum": 5,
     "description": "1 (worst) to 5 (best)"},
    {"name": "reasons", "type": "list", "description": "the reasons the reviewer gives"},
]


class Command(BaseCommand):
    help = "Create the demo user and one example batch (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument("--address", default="127.0.0.1:8000",
                            help="host:port the web server listens on (make demo passes its own).")

    def handle(self, *args, username: str, password: str, address: str, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
        if not Batch.objects.filter(owner=user).exists():
            with DEMO_CSV.open("rb") as f:
                batch = batch_create(owner=user, prompt=DEMO_PROMPT, file=f,
                                     filename=DEMO_CSV.name, name="Product review sentiment",
                                     concurrency=4, output_fields=DEMO_FIELDS)
            self.stdout.write(f"Loaded the example batch {batch.pk} ({batch.total_rows} rows).")
        self.stdout.write(self.style.SUCCESS(
            f"Demo ready: log in at http://{address}/ as {username!r} / {password!r}."
        ))
