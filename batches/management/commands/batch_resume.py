from batches import cli, services


class Command(cli.BatchActionCommand):
    help = "Resume a paused, cancelled or interrupted batch."
    service = services.batch_resume
    done = "Resumed batch {id}: {rows} back to pending."
