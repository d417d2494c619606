import argparse

from django.core.management.base import BaseCommand

from batches import retention


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--days must be a whole number, not {value!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError("--days must be at least 1")
    return days


class Command(BaseCommand):
    help = ("Delete finished batches older than BATCH_RETENTION_DAYS (or --days) with their rows, "
            "stored documents and unused result-cache entries; --dry-run only prints what would "
            "go.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true",
                            help="Print what would be deleted and change nothing.")
        parser.add_argument("--days", type=_days, default=None,
                            help="Delete batches finished more than this many days ago "
                                 "(overrides BATCH_RETENTION_DAYS).")

    def handle(self, *args, dry_run: bool, days: int | None, **options):
        for line in retention.cleanup(days=days, dry_run=dry_run).lines():
            self.stdout.write(line)
