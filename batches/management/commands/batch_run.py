import logging
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from batches import cli, outputs, services
from batches.providers import catalog

# Service field names as the options that set them.
OPTION_NAMES = {
    "prompt": "--prompt",
    "concurrency": "--concurrency",
    "max_retries": "--max-retries",
    "priority": "--priority",
    "conversation_column": "--conversation-column",
    "temperature": "--temperature",
    "max_output_tokens": "--max-output-tokens",
    "sheet": "--sheet",
    "model": "--model",
    "thinking": "--thinking",
    "budget": "--budget",
    "output_fields": "--field",
    "response_schema": "--schema",
    "webhook_url": "--webhook",
    "system_instruction": "--system-instruction",
    "language": "--language",
    "google_search": "--google-search",
    "url_context": "--url-context",
}


class Command(BaseCommand):
    help = ("Create a batch from a CSV, XLSX or JSONL file and print its id; with --wait, "
            "show its progress until it ends (exit status 0 if every row succeeded, else 1).")

    def add_arguments(self, parser):
        parser.add_argument("file", help="The CSV, XLSX or JSONL file, with a header row.")
        parser.add_argument("--prompt", required=True,
                            help='The prompt template, e.g. "Summarise: {{text}}".')
        parser.add_argument("--name", default="", help="Default: the file's name.")
        parser.add_argument("--model", default=None)
        parser.add_argument("--concurrency", type=int, default=None,
                            help="Default: the owner's settings (else 16).")
        parser.add_argument("--max-retries", type=int, default=3)
        parser.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
        parser.add_argument("--conversation-column", default="",
                            help="Rows sharing a value in this column form one conversation.")
        parser.add_argument("--sheet", default=None, help="The XLSX sheet (default: the first).")
        parser.add_argument("--system-instruction", default=None,
                            help="Default: the owner's settings.")
        parser.add_argument("--language", default=None, metavar="CODE",
                            help="Answer in this language (fr, de, ja...); \"\" for the "
                                 "prompt's own. Default: the owner's settings.")
        parser.add_argument("--google-search", action="store_true",
                            help="Ground answers with Google Search; rows keep their sources.")
        parser.add_argument("--url-context", action="store_true",
                            help="Let the model read the URLs in the prompt.")
        parser.add_argument("--temperature", type=float, default=None)
        parser.add_argument("--max-output-tokens", type=int, default=None)
        parser.add_argument("--owner", default=None,
                            help="Username of the batch's owner (default: the first superuser).")
        parser.add_argument(
            "--field", action="append", default=[], metavar="NAME:TYPE[:DESCRIPTION]",
            help="An output column (repeat for more): types text, integer, number, boolean, "
                 "enum(a,b,c), list, date; NAME? makes it optional. "
                 'E.g. --field "sentiment:enum(positive,mixed,negative)"')
        parser.add_argument("--schema", default=None, metavar="FILE",
                            help="Output columns as a JSON Schema file (instead of --field).")
        parser.add_argument("--webhook", default="", metavar="URL",
                            help="POST this batch's events to URL, signed with the owner's "
                                 "default secret (see docs/notifications.md).")
        parser.add_argument("--wait", action="store_true",
                            help="Show progress until the batch ends.")
        parser.add_argument("--thinking", default=None,
                            help="off, low, default (the model decides) or a thinking budget "
                                 "in tokens. Default: the owner's settings (else off).")
        parser.add_argument("--budget", default=None,
                            help="Most the batch may spend, e.g. 5.00; it pauses there.")
        parser.add_argument("--mode", choices=["online", "batch"], default="online",
                            help="batch: Gemini Batch Mode, half price, results usually "
                                 "within hours.")
        parser.add_argument("--no-fallback-online", action="store_true",
                            help="Batch mode: put rows of a stalled job in a new job instead "
                                 "of running them online.")
        parser.add_argument("--estimate", action="store_true",
                            help="Print the estimated tokens, cost and time; create nothing.")
        parser.add_argument("--draft", action="store_true",
                            help="Save as a draft: nothing runs until batch_start (try it "
                                 "first with batch_sample).")
        parser.add_argument("--always-call-model", action="store_true",
                            help="Never reuse an identical earlier answer from the cache.")

    def handle(self, *args, **options):
        # django-q logs every task it enqueues: noise in this command's output.
        logger = logging.getLogger("django-q")
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            self._run(options)
        finally:
            logger.setLevel(level)

    def _run(self, options: dict) -> None:
        if options["draft"] and options["wait"]:
            raise CommandError("--wait needs a batch that runs; a --draft waits for "
                               "batch_start.", returncode=2)
        owner = self._owner(options["owner"])
        path = Path(options["file"])
        if options["estimate"]:
            for line in self._call(services.batch_estimate, path, owner, options).lines():
                self.stdout.write(line)
            return
        batch = self._call(services.batch_create, path, owner, options)
        kind = "draft batch" if options["draft"] else "batch"
        self.stdout.write(f"Created {kind} {batch.pk} ({cli.plural(batch.total_rows, 'row')}) "
                          f"from {path.name}.")
        for warning in getattr(batch, "warnings", []):
            self.stderr.write(f"Warning: {warning}")
        if options["draft"]:
            self.stdout.write(f"Try it: python manage.py batch_sample {batch.pk} --size 5 "
                              f"--wait; then: python manage.py batch_start {batch.pk}")
            return
        if not options["wait"]:
            self.stdout.write(f"Follow it: python manage.py batch_status {batch.pk} "
                              "(a worker must be running: python manage.py qcluster)")
            return
        waiter = cli.Waiter(batch, self.stdout)
        try:
            batch = waiter.wait()
        except KeyboardInterrupt:
            self.stdout.write("")
            self.stdout.write(f"Stopped waiting; batch {batch.pk} keeps running. Check on it "
                              f"with: python manage.py batch_status {batch.pk}")
            sys.exit(130)
        for line in waiter.summary():
            self.stdout.write(line)
        sys.exit(0 if cli.all_succeeded(batch) else 1)

    def _owner(self, username: str | None):
        users = get_user_model().objects
        if username:
            owner = users.filter(username=username).first()
            if owner is None:
                raise CommandError(f"There is no user {username!r}.", returncode=2)
            return owner
        owner = users.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if owner is None:
            raise CommandError("No owner: pass --owner USER or create a superuser "
                               "(python manage.py ensure_admin)", returncode=2)
        return owner

    def _output(self, options: dict) -> dict:
        """The output columns the options ask for, as batch_create keyword arguments."""
        if options["field"] and options["schema"]:
            raise CommandError("Use --field or --schema, not both.", returncode=2)
        try:
            if options["field"]:
                return {"output_fields": [outputs.parse_field_spec(spec)
                                          for spec in options["field"]]}
            if options["schema"]:
                schema_path = Path(options["schema"])
                try:
                    text = schema_path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as err:
                    raise CommandError(f"--schema: cannot read {schema_path}: {err}.",
                                       returncode=2) from err
                return {"response_schema": outputs.loads_schema(text)}
        except outputs.OutputSchemaError as err:
            where = f"--schema {options['schema']}: " if options["schema"] else ""
            raise CommandError(f"{where}{err}", returncode=2) from err
        return {}

    def _call(self, service, path: Path, owner, options: dict):
        """batch_create or batch_estimate on the file, with the options."""
        output = self._output(options)
        self._schema_file = options["schema"]
        if options["model"]:
            try:
                catalog.check_model(options["model"])
            except catalog.OptionError as err:
                raise CommandError(f"--model: {err}", returncode=2) from err
        try:
            handle = path.open("rb")
        except OSError as err:
            raise CommandError(f"Cannot read {path}: {err.strerror}.", returncode=2) from err
        with handle:
            try:
                return service(
                    owner=owner,
                    file=handle,
                    filename=path.name,
                    prompt=options["prompt"],
                    name=options["name"],
                    model=options["model"],
                    concurrency=options["concurrency"],
                    max_retries=options["max_retries"],
                    priority=options["priority"],
                    conversation_column=options["conversation_column"],
                    sheet=options["sheet"],
                    system_instruction=options["system_instruction"],
                    temperature=options["temperature"],
                    max_output_tokens=options["max_output_tokens"],
                    thinking=options["thinking"],
                    budget=options["budget"],
                    mode=options["mode"],
                    fallback_online=not options["no_fallback_online"],
                    language=options["language"],
                    google_search=options["google_search"],
                    url_context=options["url_context"],
                    **output,
                    webhook_url=options["webhook"],
                    start=not options["draft"],
                    use_cache=not options["always_call_model"],
                )
            except services.InvalidInput as err:
                raise CommandError(self._where(err, path), returncode=2) from err
            except services.ServiceError as err:
                raise CommandError(str(err), returncode=2) from err

    def _where(self, err: services.InvalidInput, path: Path) -> str:
        """The error prefixed with what it is about: the file (whose messages name the line) or
        the option."""
        if err.field in (None, "file", "rows") or err.line is not None:
            return f"{path}: {err}"
        option = OPTION_NAMES.get(err.field, "--" + err.field.replace("_", "-"))
        if err.field == "response_schema":
            return f"{option} {self._schema_file}: {err}"
        return f"{option}: {err}"
