from django.core.management.base import BaseCommand

from batches import cli


class Command(BaseCommand):
    help = "Print a batch's figures: status, counts, percent, rate, ETA, tokens, last error."

    def add_arguments(self, parser):
        parser.add_argument("batch_id", help="The batch's id.")

    def handle(self, *args, batch_id: str, **options):
        for line in cli.figures(cli.get_batch(batch_id)):
            self.stdout.write(line)
