import time

from django.core.management.base import BaseCommand, CommandError

from batches import cli, iterations, services
from batches.models import BatchResult

OPEN = (BatchResult.Status.PENDING, BatchResult.Status.RUNNING)
ANSWER_CHARS = 500


class Command(BaseCommand):
    help = ("Try a draft on a few rows now: the first N (--size), a random sample (--seed), or "
            "chosen rows (--rows 0,4,9). With --wait, print their answers when they are done.")

    def add_arguments(self, parser):
        parser.add_argument("batch_id", help="The draft's id.")
        parser.add_argument("--size", type=int, default=None,
                            help=f"Rows to try (default {iterations.DEFAULT_SAMPLE_SIZE}).")
        parser.add_argument("--seed", type=int, default=None,
                            help="A random sample with this seed instead of the first rows.")
        parser.add_argument("--rows", default=None, help="Row numbers, e.g. 0,4,9.")
        parser.add_argument("--wait", action="store_true", help="Print the answers.")
        parser.add_argument("--timeout", type=float, default=300,
                            help="Seconds --wait waits at most (default 300).")

    def handle(self, *args, batch_id: str, **options):
        batch = cli.get_batch(batch_id)
        indexes = None
        if options["rows"]:
            try:
                indexes = [int(v) for v in options["rows"].replace(",", " ").split()]
            except ValueError:
                raise CommandError(f"--rows: {options['rows']!r} is not a list of row "
                                   "numbers.", returncode=2) from None
        try:
            run = iterations.batch_sample(batch=batch, size=options["size"],
                                          seed=options["seed"], indexes=indexes)
        except services.ServiceError as err:
            raise CommandError(f"Batch {batch.pk}: {err}", returncode=2) from err
        seed = f" (seed {run.seed})" if run.seed is not None else ""
        self.stdout.write(f"Trying batch {batch.pk} on rows {', '.join(map(str, run.indexes))}"
                          f"{seed}.")
        if not options["wait"]:
            return
        rows = batch.results.filter(sample=True)
        end = time.monotonic() + options["timeout"]
        while rows.filter(status__in=OPEN).exists():
            if time.monotonic() > end:
                raise CommandError(f"The sample is not done after {options['timeout']:.0f} s. "
                                   f"{cli.NOT_MOVING_HINT}")
            time.sleep(0.5)
        for row in rows.order_by("index"):
            answer = row.output if row.status == "succeeded" else f"[{row.status}] {row.error}"
            tag = " (cached)" if row.cached else ""
            self.stdout.write(f"#{row.index}{tag} {row.prompt}\n  -> {answer[:ANSWER_CHARS]}")
