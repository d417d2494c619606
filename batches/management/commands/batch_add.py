from contextlib import ExitStack
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from batches import batch_rows, cli, documents, services

SPREADSHEET_EXTENSIONS = {"csv", "tsv", "tab", "xlsx", "xlsm", "jsonl", "ndjson"}


class Command(BaseCommand):
    help = ("Add rows to a batch from spreadsheet files (CSV, XLSX, JSONL) or documents (PDF, "
            "images, text, ZIPs of them). New rows run with the batch's settings; a finished "
            "batch runs again. A documents batch takes documents; otherwise files with a "
            "spreadsheet extension are spreadsheets and the others documents.")

    def add_arguments(self, parser):
        parser.add_argument("batch_id", help="The batch's id.")
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--documents", action="store_true",
                            help="Treat every FILE as a document.")
        parser.add_argument("--duplicates", choices=documents.DUPLICATE_CHOICES, default=None,
                            help="Keep or skip files whose bytes the batch already has.")
        parser.add_argument("--sheet", default=None, help="The XLSX sheet (default: the first).")

    def handle(self, *args, batch_id: str, files: list[str], **options):
        batch = cli.get_batch(batch_id)
        paths = [Path(f) for f in files]
        as_documents = options["documents"] or batch.columns == documents.DOCUMENT_COLUMNS
        with ExitStack() as stack:
            sheets, docs = [], []
            for path in paths:
                try:
                    handle = stack.enter_context(path.open("rb"))
                except OSError as err:
                    raise CommandError(f"Cannot read {path}: {err.strerror}.",
                                       returncode=2) from err
                is_sheet = path.suffix.lower().lstrip(".") in SPREADSHEET_EXTENSIONS
                (sheets if is_sheet and not as_documents else docs).append((path.name, handle))
            try:
                added = batch_rows.batch_add_rows(
                    batch=batch, files=sheets or None, documents=docs or None,
                    duplicates=options["duplicates"], sheet=options["sheet"])
            except services.InvalidInput as err:
                raise CommandError(str(err), returncode=2) from err
            except services.ServiceError as err:
                raise CommandError(f"Batch {batch.pk}: {err}") from err
        for warning in getattr(batch, "warnings", []):
            self.stderr.write(f"Warning: {warning}")
        total = cli.plural(batch.total_rows, "row")
        self.stdout.write(f"Added {cli.plural(added, 'row')} to batch {batch.pk} "
                          f"({batch.display_name}); it now has {total} and is "
                          f"{batch.get_status_display().lower()}.")
