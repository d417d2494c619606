from django.core.management.base import BaseCommand, CommandError

from batches import cli, costs, services


class Command(BaseCommand):
    help = ("Set a batch's budget (e.g. 5.00; 'none' removes it). A batch paused at its budget "
            "goes on once the new one leaves room.")

    def add_arguments(self, parser):
        parser.add_argument("batch_id", help="The batch's id.")
        parser.add_argument("amount", help="The new budget, e.g. 5.00, or none.")

    def handle(self, *args, batch_id: str, amount: str, **options):
        batch = cli.get_batch(batch_id)
        value = None if amount.strip().lower() in ("none", "off", "") else amount
        try:
            batch = services.batch_set_budget(batch=batch, budget=value)
        except services.ServiceError as err:
            raise CommandError(f"Batch {batch.pk}: {err}") from err
        budget = costs.format_money(batch.budget) if batch.budget is not None else "no budget"
        self.stdout.write(f"Batch {batch.pk}: budget {budget}; spent so far "
                          f"{costs.format_money(batch.cost_spent)}; status "
                          f"{batch.get_status_display().lower()}.")
