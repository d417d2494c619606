import sys

from django.core.management.base import BaseCommand, CommandError

from batches import cli, iterations, services


class Command(BaseCommand):
    help = ("Start a draft batch: all its rows run (rows answered before with the same request "
            "come from the cache). With --wait, show progress until it ends.")

    def add_arguments(self, parser):
        parser.add_argument("batch_id", help="The draft's id.")
        parser.add_argument("--wait", action="store_true",
                            help="Show progress until the batch ends.")

    def handle(self, *args, batch_id: str, wait: bool, **options):
        batch = cli.get_batch(batch_id)
        try:
            batch = iterations.batch_start(batch=batch)
        except services.ServiceError as err:
            raise CommandError(f"Batch {batch.pk}: {err}") from err
        self.stdout.write(f"Started batch {batch.pk}: {cli.plural(batch.total_rows, 'row')}.")
        if not wait:
            return
        waiter = cli.Waiter(batch, self.stdout)
        batch = waiter.wait()
        for line in waiter.summary():
            self.stdout.write(line)
        sys.exit(0 if cli.all_succeeded(batch) else 1)
