from batches import cli, services


class Command(cli.BatchActionCommand):
    help = "Send a batch's failed rows back to pending with a fresh retry budget."
    service = services.batch_retry_failed
    done = "Batch {id}: {rows} back to pending."
    row_word = "failed row"
