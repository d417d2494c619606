from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from batches.models import Batch
from batches.services import batch_create

DEMO_CSV = Path(__file__).resolve().parents[2] / "demo" / "reviews.csv"
DEMO_PROMPT = (
    "Classify the sentiment of this review of {{product}} ({{rating}} stars) as positive, "
    "mixed or negative, then give the main reason in one sentence.\n\nReview: {{review}}"
)


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
                                     concurrency=4)
            self.stdout.write(f"Loaded the example batch {batch.pk} ({batch.total_rows} rows).")
        self.stdout.write(self.style.SUCCESS(
            f"Demo ready: log in at http://{address}/ as {username!r} / {password!r}."
        ))
