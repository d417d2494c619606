from batches import cli, services


class Command(cli.BatchActionCommand):
    help = "Cancel a batch: rows not started are cancelled, rows in flight finish."
    service = services.batch_cancel
    done = "Cancelled batch {id}: {rows} cancelled before they ran; rows in flight will finish."
