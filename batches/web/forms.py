"""The new-batch form: its fields map one to one onto services.batch_create's keyword arguments."""

from __future__ import annotations

import io
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from batches import languages, outputs, preferences
from batches.models import Priority
from batches.providers import capabilities, catalog
from batches.services import MAX_CONCURRENCY, MAX_OUTPUT_TOKENS, MAX_RETRIES, ServiceError
from batches.web import output

ACCEPTED_EXTENSIONS = ".csv,.tsv,.txt,.xlsx,.jsonl,.ndjson"
DOCUMENT_EXTENSIONS = (".pdf,.png,.jpg,.jpeg,.webp,.heic,.heif,.txt,.md,.markdown,.html,.htm,"
                       ".csv,.zip")
SOURCES = [("spreadsheet", "a spreadsheet"), ("documents", "documents")]
DUPLICATE_CHOICES = [("", "Ask me"), ("keep", "Keep every copy (one row each)"),
                     ("skip", "Skip the copies")]


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files under one name (Django's documented pattern); cleans to a list."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list:
        one = super().clean
        if isinstance(data, (list, tuple)):
            return [one(d, initial) for d in data if d]
        return [one(data, initial)] if data else []


def max_upload_bytes() -> int:
    return (settings.BATCH_MAX_UPLOAD_MB or 50) * 1024 * 1024


class UploadLimitHandler(FileUploadHandler):
    """The first upload handler: bytes of a file past the size limit are dropped, not spooled
    to disk by the handlers after it, and the file arrives empty with its real `.size`, which
    the form and the API serializer refuse before anything reads it."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.over_limit = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if start + len(raw_data) > max_upload_bytes():
            self.over_limit = True
        return None if self.over_limit else raw_data

    def file_complete(self, file_size: int) -> UploadedFile | None:
        if not self.over_limit:
            return None  # a later handler holds the file
        return UploadedFile(io.BytesIO(), name=self.file_name, content_type=self.content_type,
                            size=file_size, charset=self.charset)


THINKING_CHOICES = [
    ("off", "Off (cheapest; Gemini 2.5 Pro still thinks at least 128 tokens)"),
    ("low", "Low (up to about 1,024 tokens a row)"),
    ("4096", "Up to 4,096 tokens a row"),
    ("8192", "Up to 8,192 tokens a row"),
    ("default", "The model decides (can be thousands of tokens a row)"),
]


LANGUAGE_CHOICES = [("", languages.PROMPT_LANGUAGE), *languages.LANGUAGES]


def thinking_choices(current: str = "") -> list[tuple[str, str]]:
    """The thinking menu, with a saved budget that is not one of its entries added."""
    choices = list(THINKING_CHOICES)
    if current and current not in dict(choices):
        choices.append((current, f"Up to {int(current):,} tokens a row"))
    return choices


def tool_models(tool: str) -> str:
    """The models of the menu that take `tool`, space-separated (the page hides the switch for
    the others)."""
    return " ".join(m for _, group in _model_choices() for m, _ in group
                    if capabilities.supports(m, tool))


def _model_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """The models grouped by provider: the select shows one <optgroup> per provider."""
    return [(label, [(m, m) for m in models]) for label, models in catalog.model_groups()]


class RowsUploadForm(forms.Form):
    """Spreadsheets and/or documents, as the new-batch page and "Add rows" send them."""

    file = MultipleFileField(
        required=False,
        help_text="CSV, TSV, XLSX or JSONL with a header row; several files make one batch.",
        widget=MultipleFileInput(attrs={"accept": ACCEPTED_EXTENSIONS}),
    )
    documents = MultipleFileField(
        required=False,
        widget=MultipleFileInput(attrs={"accept": DOCUMENT_EXTENSIONS}),
    )
    duplicates = forms.ChoiceField(choices=DUPLICATE_CHOICES, required=False,
                                   label="Files with the same content")
    sheet = forms.CharField(max_length=200, required=False,
                            help_text="XLSX only; empty takes the first sheet.")

    def clean_file(self):
        files = self.cleaned_data["file"]
        # The size comes from the upload handler; the file's content is not read here.
        for file in files:
            if file.size > max_upload_bytes():
                which = "The file" if len(files) == 1 else file.name
                raise forms.ValidationError(
                    f"{which} is {file.size / 1024 / 1024:.1f} MB; "
                    f"the limit is {settings.BATCH_MAX_UPLOAD_MB} MB."
                )
        return files

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        if data.get("source") == "documents":
            if not data.get("documents"):
                self.add_error("documents", "Choose or drop at least one document.")
        elif not (data.get("file") or data.get("documents") or self.has_staged_file()):
            self.add_error("file", "Choose a file.")
        return data

    def has_staged_file(self) -> bool:
        return False

    def upload_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        kwargs: dict[str, Any] = {"sheet": data["sheet"].strip() or None,
                                  "duplicates": data["duplicates"] or None}
        files = [] if data.get("source") == "documents" else data["file"]
        if len(files) == 1:
            kwargs.update(file=files[0], filename=files[0].name)
        elif files:
            kwargs["files"] = [(f.name, f) for f in files]
        if data["documents"]:
            kwargs["documents"] = [(f.name, f) for f in data["documents"]]
        return kwargs

    def add_service_error(self, err: ServiceError) -> None:
        """Attach a service error to the field it concerns, with its line number."""
        message = err.message
        if err.line and f"line {err.line}" not in message.lower():
            message = f"Line {err.line}: {message}"
        field = {"rows": "file"}.get(err.field or "", err.field)
        self.add_error(field if field in self.fields else None, message)


class BatchForm(RowsUploadForm):
    source = forms.ChoiceField(choices=SOURCES, initial="spreadsheet", required=False,
                               widget=forms.RadioSelect, label="Rows from")
    name = forms.CharField(max_length=200, required=False,
                           help_text="Defaults to the file name.")
    prompt = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text="Write {{column}} where a row's value goes; click a column to insert it.",
    )
    model = forms.ChoiceField(choices=_model_choices)
    system_instruction = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False,
        help_text="Sent with every row, before the prompt.",
    )
    temperature = forms.FloatField(required=False, min_value=0, max_value=2,
                                   widget=forms.NumberInput(attrs={"step": "0.1"}),
                                   help_text="0 to 2; empty uses the model's default.")
    max_output_tokens = forms.IntegerField(required=False, min_value=1,
                                           max_value=MAX_OUTPUT_TOKENS,
                                           help_text="Empty: no limit.")
    concurrency = forms.IntegerField(initial=16, min_value=1, max_value=MAX_CONCURRENCY,
                                     help_text="Rows sent to the model at the same time.")
    max_retries = forms.IntegerField(initial=3, min_value=0, max_value=MAX_RETRIES,
                                     help_text="Per row, for transient errors.")
    priority = forms.TypedChoiceField(choices=Priority.choices, coerce=int,
                                      initial=Priority.NORMAL)
    conversation_column = forms.CharField(
        max_length=200, required=False,
        widget=forms.TextInput(attrs={"list": "column-names", "autocomplete": "off"}),
        help_text="Rows sharing this column's value run in order, as one chat.",
    )
    thinking = forms.ChoiceField(
        choices=THINKING_CHOICES, initial="off", required=False,
        help_text="Thinking tokens are paid as output: off suits classification and extraction.")
    budget = forms.DecimalField(
        required=False, min_value=0, max_digits=14, decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.01", "placeholder": "no budget"}),
        help_text="The batch pauses before it would spend more (USD).")
    mode = forms.ChoiceField(
        choices=[("online", "Online: results as they come"),
                 ("batch", "Batch mode: half price, results usually within hours")],
        initial="online", required=False, label="Mode",
        help_text="Batch mode sends the rows to Gemini's Batch Mode in jobs.")
    fallback_online = forms.BooleanField(
        required=False, initial=True, label="Run online if Gemini stalls",
        help_text="Batch mode: rows of a job that stalls or expires run online, at the online "
                  "price; otherwise they go in a new job.")
    # The Output section (batches/web/output.py reads the field editor's rows).
    output_mode = forms.ChoiceField(choices=[("text", "Text"), ("columns", "Columns")],
                                    initial="text", required=False)
    output_advanced = forms.BooleanField(required=False)
    output_schema = forms.CharField(required=False, widget=forms.Textarea)
    webhook_url = forms.CharField(
        max_length=2000, required=False, label="Webhook URL",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/hook"}),
        help_text="Receives this batch's events, signed with your default secret "
                  "(Notifications page).")
    always_call_model = forms.BooleanField(
        required=False, label="Always call the model",
        help_text="Never reuse an identical earlier answer (e.g. for fresh samples at a high "
                  "temperature).")
    google_search = forms.BooleanField(
        required=False, label=capabilities.TOOLS["google_search"],
        help_text="The model searches the web for each row; its sources are kept and shown "
                  "under the answer.")
    url_context = forms.BooleanField(
        required=False, label=capabilities.TOOLS["url_context"],
        help_text="The model reads the web pages whose URLs are in the prompt.")
    language = forms.ChoiceField(choices=LANGUAGE_CHOICES, required=False, label="Answer in")

    def __init__(self, *args: Any, staged: Any = None, user: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.staged = staged
        self.fields["file"].help_text += f" At most {settings.BATCH_MAX_UPLOAD_MB} MB."
        # New batches start from the user's own settings (batches.preferences).
        prefs = preferences.for_user(user) if user is not None else None
        self.fields["model"].initial = prefs.model if prefs else settings.GEMINI_DEFAULT_MODEL
        if prefs:
            self.fields["concurrency"].initial = prefs.concurrency
            self.fields["thinking"].choices = thinking_choices(prefs.thinking)
            self.fields["thinking"].initial = prefs.thinking
            self.fields["language"].initial = prefs.language
            if prefs.apply_overrides:
                self.fields["system_instruction"].help_text = (
                    "Sent with every row, before the prompt, after your own system instruction "
                    "(Settings: always applied).")
            else:
                self.fields["system_instruction"].initial = prefs.system_instruction
        for tool in capabilities.TOOLS:
            self.fields[tool].widget.attrs["data-tool-models"] = tool_models(tool)

    def has_staged_file(self) -> bool:
        return self.staged is not None

    def clean(self):
        cleaned = super().clean()
        try:
            self.output = output.output_kwargs(self.data)
        except outputs.OutputSchemaError as err:
            self.add_error("output_schema", str(err))
        return cleaned

    def editor_rows(self) -> list[dict[str, str]]:
        return output.editor_rows(self.data if self.is_bound else None)

    def service_kwargs(self, file: Any = None, filename: str = "") -> dict[str, Any]:
        """Keyword arguments for services.batch_create (without owner): the staged `file` when
        given (one spreadsheet, kept on the server), else the uploaded files and documents."""
        data = self.cleaned_data
        upload = self.upload_kwargs()
        if file is not None:
            upload.pop("files", None)
            upload.update(file=file, filename=filename)
        return {
            **getattr(self, "output", {}),
            **upload,
            "name": data["name"],
            "prompt": data["prompt"],
            "model": data["model"],
            "system_instruction": data["system_instruction"],
            "temperature": data["temperature"],
            "max_output_tokens": data["max_output_tokens"],
            "concurrency": data["concurrency"],
            "max_retries": data["max_retries"],
            "priority": data["priority"],
            "conversation_column": data["conversation_column"].strip(),
            "webhook_url": data["webhook_url"].strip(),
            "use_cache": not data["always_call_model"],
            "thinking": data["thinking"] or "off",
            "budget": data["budget"],
            "mode": data.get("mode") or "online",
            # An unticked box is absent from the POST; the default is on.
            "fallback_online": bool(data.get("fallback_online")) if self.is_bound else True,
            "language": data["language"],
            "google_search": data["google_search"],
            "url_context": data["url_context"],
        }

    def add_service_error(self, err: ServiceError) -> None:
        """Attach a service error to the field it concerns, with its line number."""
        message = err.message
        if err.line and f"line {err.line}" not in message.lower():
            message = f"Line {err.line}: {message}"
        field = {"rows": "file", "output_fields": "output_mode",
                 "response_schema": "output_schema"}.get(err.field or "", err.field)
        self.add_error(field if field in self.fields else None, message)

    def describe_errors(self) -> None:
        """Mark fields with errors invalid and point them at their error and help texts, so a
        screen reader announces both (templates give the texts these ids)."""
        for name in self.errors:
            if name not in self.fields:
                continue
            auto_id = self[name].auto_id
            attrs = self.fields[name].widget.attrs
            described = [f"{auto_id}_error"]
            if self.fields[name].help_text:
                described.append(f"{auto_id}_helptext")
            attrs["aria-invalid"] = "true"
            attrs["aria-describedby"] = " ".join(described)
