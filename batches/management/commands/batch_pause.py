from batches import cli, services


class Command(cli.BatchActionCommand):
    help = "Pause a batch: workers stop claiming its rows; rows in flight finish."
    service = services.batch_pause
    done = ("Paused batch {id}: {rows} wait to run. "
            "Resume it with: python manage.py batch_resume {id}")
