"""API serializers: they check types and ranges; batches/services.py acts."""

from __future__ import annotations

import math
import re
from decimal import Decimal

from django.conf import settings
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from batches import costs, languages
from batches.iterations import cache_figures
from batches.models import Batch, BatchResult, Priority, ProviderJob
from batches.providers import catalog
from batches.services import MAX_CONCURRENCY, MAX_OUTPUT_TOKENS, MAX_RETRIES

PRIORITIES = [label for _, label in Priority.choices]


class _StringField(serializers.CharField):
    """A string; DRF's CharField would also take a JSON number as its text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class _TextField(_StringField):
    """Prompts and instructions are kept exactly as written, spaces included."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class _NumberField(serializers.FloatField):
    """A number; DRF's FloatField would also take JSON true/false as 1.0/0.0."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


MONEY_PATTERN = r"^[0-9]{1,8}(\.[0-9]{1,6})?$"


@extend_schema_field({
    "oneOf": [{"type": "string", "pattern": MONEY_PATTERN},
              {"type": "number", "minimum": 0, "maximum": 99999999}],
    "nullable": True,
})
class _MoneyField(serializers.DecimalField):
    """An amount of money ("5.00" or 5; numbers are rounded to 6 decimal places), or null for
    none (in a form body: empty or "null", see views.form_data)."""

    def __init__(self, **kwargs):
        kwargs.update(max_digits=14, decimal_places=6, allow_null=True)
        super().__init__(**kwargs)

    def validate_empty_values(self, data):
        # DRF's DecimalField takes "" as null; here only null is.
        return serializers.Field.validate_empty_values(self, data)

    def to_internal_value(self, data):
        if isinstance(data, str) and re.fullmatch(MONEY_PATTERN, data):
            return Decimal(data)
        if isinstance(data, (int, float)) and not isinstance(data, bool) and math.isfinite(data):
            value = Decimal(str(data)).quantize(Decimal("0.000001"))
            if 0 <= value <= 99999999:
                return value
            raise serializers.ValidationError("Must be between 0 and 99999999.")
        raise serializers.ValidationError("An amount of money, like 5 or \"12.50\".")


class _BooleanField(serializers.BooleanField):
    """true or false (or their text, from a form); DRF's would also take 0, 1, "yes"..."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if isinstance(data, str) and data.lower() in ("true", "false"):
            return data.lower() == "true"
        self.fail("invalid", input=data)


SOURCES_SCHEMA = {"type": "array", "items": {"type": "object", "properties": {
    "uri": {"type": "string"}, "title": {"type": "string"}}}}


class _BatchSettingsSerializer(serializers.Serializer):
    prompt = _TextField(help_text="Prompt template; {{column}} placeholders name input columns.")
    name = _StringField(max_length=200, required=False, allow_blank=True, default="")
    model = _StringField(max_length=100, required=False, allow_blank=True, default="",
                         help_text="A model from GEMINI_MODELS or OPENAI_MODELS (an "
                                   "OpenAI-compatible endpoint); your settings' default (else "
                                   "the server's) when empty.")
    system_instruction = _TextField(
        required=False, allow_blank=True,
        help_text="Default: your settings' system instruction. With “always apply my system "
                  "instruction” on, yours goes before this one.")
    temperature = _NumberField(min_value=0, max_value=2, required=False,
                               allow_null=True, default=None)
    max_output_tokens = serializers.IntegerField(min_value=1, max_value=MAX_OUTPUT_TOKENS,
                                                 required=False, allow_null=True, default=None)
    concurrency = serializers.IntegerField(
        min_value=1, max_value=MAX_CONCURRENCY, required=False,
        help_text="Rows sent at the same time; default: your settings' (else 16).")
    max_retries = serializers.IntegerField(min_value=0, max_value=MAX_RETRIES, required=False,
                                           default=3)
    priority = serializers.ChoiceField(choices=PRIORITIES, required=False, default="normal")
    conversation_column = _StringField(
        max_length=200, required=False, allow_blank=True, default="",
        help_text="Rows sharing a value in this column form one multi-turn conversation.")
    thinking = _StringField(
        max_length=12, required=False,
        help_text="off, low, default (the model decides) or a thinking budget in tokens; sent "
                  "as thinking_budget (Gemini 2.5) or thinking_level (Gemini 3). Default: your "
                  "settings' (else off).")
    budget = _MoneyField(
        required=False, default=None,
        help_text="Most the batch may spend (in the price's currency); it pauses when the next "
                  "rows would pass it.")
    language = serializers.ChoiceField(
        choices=["", *languages.NAMES], required=False, allow_blank=True,
        help_text="Answer in this language (a language code); empty: the prompt's own. "
                  "Default: your settings'.")
    google_search = _BooleanField(
        required=False, default=False,
        help_text="Ground answers with Google Search; each row keeps its web sources. Only "
                  "for models that take the tool (400 otherwise).")
    url_context = _BooleanField(
        required=False, default=False,
        help_text="Let the model read the URLs in the prompt (400 for models without it).")
    webhook_url = _StringField(
        max_length=2000, required=False, allow_blank=True, default="",
        help_text="Receives this batch's events, signed with your default secret.")
    mode = serializers.ChoiceField(
        choices=["online", "batch"], required=False, default="online",
        help_text="online, or batch: Gemini Batch Mode, half price, results usually within "
                  "hours.")
    fallback_online = _BooleanField(
        required=False, default=True,
        help_text="Batch mode: rows of a job the provider stalls, expires or fails run online "
                  "at the online price (false: they go in a new job).")
    start = _BooleanField(
        required=False, default=True,
        help_text="false: save as a draft; nothing runs until POST .../start/.")
    use_cache = _BooleanField(
        required=False, default=True,
        help_text="false: always call the model, never reuse an identical earlier answer.")

    def validate_model(self, value: str) -> str:
        if value:
            try:
                catalog.check_model(value)
            except catalog.OptionError as err:
                raise serializers.ValidationError(err.message) from err
        return value


OUTPUT_FIELDS_SCHEMA = {
    "type": "array", "maxItems": 100, "nullable": True,
    "description": "Columns output: one field per column, in order. Types: text, integer, number, "
                   "boolean, enum (with values), list (of text), date.",
    "items": {"type": "object", "required": ["name", "type"], "properties": {
        "name": {"type": "string"},
        "type": {"type": "string",
                 "enum": ["text", "integer", "number", "boolean", "enum", "list", "date"]},
        "values": {"type": "array", "items": {"type": "string"}},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "description": {"type": "string"},
        "required": {"type": "boolean", "default": True},
    }},
}
RESPONSE_SCHEMA_SCHEMA = {
    "type": "object", "nullable": True, "additionalProperties": True,
    "description": "Columns output as a JSON Schema: an object whose properties are the "
                   "columns (instead of output_fields).",
}


@extend_schema_field(OUTPUT_FIELDS_SCHEMA)
class OutputFieldsField(serializers.JSONField):
    """Checked by services.batch_create, whose errors name the path (output_fields[2].type)."""


@extend_schema_field(RESPONSE_SCHEMA_SCHEMA)
class ResponseSchemaField(serializers.JSONField):
    pass


class _OutputSerializer(serializers.Serializer):
    output_fields = OutputFieldsField(required=False, allow_null=True, default=None)
    response_schema = ResponseSchemaField(required=False, allow_null=True, default=None)


class _FilesField(serializers.ListField):
    """Several files under one name; errors are one flat list naming the item."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.FileField(), **kwargs)

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as err:
            detail = err.detail
            if isinstance(detail, dict):
                raise serializers.ValidationError([
                    f"Item {key}: {' '.join(str(m) for m in messages)}"
                    for key, messages in detail.items()]) from None
            raise


class RowsUploadSerializer(serializers.Serializer):
    """multipart/form-data: spreadsheets and/or documents (see docs/documents.md)."""

    file = serializers.FileField(
        required=False,
        help_text="CSV, XLSX or JSONL; the first row is the header. Repeat the field to send "
                  "several files: one batch, with a source_file column.")
    sheet = _StringField(max_length=200, required=False, allow_blank=True, default="",
                         help_text="XLSX only: the sheet to read (the first when empty).")
    documents = _FilesField(
        required=False, default=list,
        help_text="PDF, PNG, JPEG, WEBP, HEIC, text, Markdown, HTML or CSV files, or ZIPs of "
                  "them. Alone: one row per file. With a spreadsheet: the files that "
                  "{{file:column}} names.")
    duplicates = serializers.ChoiceField(
        choices=["keep", "skip"], required=False, allow_blank=True, default="",
        help_text="What to do with files whose bytes were already sent; when empty, "
                  "duplicates are refused with a list of them.")

    def validate_file(self, value):
        limit = settings.BATCH_MAX_UPLOAD_MB
        if limit and value.size > limit * 1024 * 1024:
            raise serializers.ValidationError(f"The file is larger than the {limit} MB limit.")
        return value

    def validate(self, attrs):
        if attrs.get("file") is None and not attrs.get("documents"):
            raise serializers.ValidationError({"file": ["Send a file or documents."]})
        return attrs


class BatchFileCreateSerializer(_BatchSettingsSerializer, _OutputSerializer,
                                RowsUploadSerializer):
    """multipart/form-data: a spreadsheet (or several), documents, or both, plus settings."""


@extend_schema_field({"type": "array", "minItems": 1,
                      "items": {"type": "object", "additionalProperties": True,
                                "minProperties": 1}})
class RowsField(serializers.JSONField):
    """A list of objects, checked in one pass (ListField(DictField()) is slow on 200,000 rows)."""

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise serializers.ValidationError("Rows must be a list of objects.")
        if not data:
            raise serializers.ValidationError("Send at least one row.")
        cap = settings.BATCH_MAX_ROWS
        if cap and len(data) > cap:
            raise serializers.ValidationError(f"Too many rows: {len(data)} (the limit is {cap}).")
        return data


class BatchRowsCreateSerializer(_BatchSettingsSerializer, _OutputSerializer):
    """application/json: the rows themselves plus the settings."""

    rows = RowsField(help_text="The rows, one object per row; keys are the columns.")


class RowsAddJsonSerializer(serializers.Serializer):
    """application/json: rows to add to a batch."""

    rows = RowsField(help_text="The rows, one object per row; keys are the columns.")


class RowsAddedSerializer(serializers.Serializer):
    rows_added = serializers.IntegerField()
    batch = serializers.DictField(help_text="The batch, as GET /api/batches/{id}/ answers.")


class BatchUpdateSerializer(serializers.Serializer):
    name = _StringField(max_length=200, required=False, allow_blank=True)
    priority = serializers.ChoiceField(choices=PRIORITIES, required=False)
    concurrency = serializers.IntegerField(min_value=1, max_value=MAX_CONCURRENCY, required=False)
    max_retries = serializers.IntegerField(min_value=0, max_value=MAX_RETRIES, required=False)
    output_fields = OutputFieldsField(
        required=False, allow_null=True,
        help_text="Only while no row has run (409 after); null with response_schema null "
                  "makes the output text again.")
    response_schema = ResponseSchemaField(required=False, allow_null=True,
                                          help_text="Only while no row has run (409 after).")
    budget = _MoneyField(
        required=False,
        help_text="Set, raise or remove (null) the budget; a batch paused at its budget goes on "
                  "once the new one leaves room.")


class SpendSerializer(serializers.Serializer):
    spent = serializers.CharField(allow_null=True, help_text="Null: price unknown.")
    budget = serializers.CharField(allow_null=True)
    estimate_rest = serializers.CharField(
        allow_null=True, help_text="Estimated cost of the rows not answered yet.")
    currency = serializers.CharField()
    unpriced_rows = serializers.IntegerField(help_text="Answers whose model had no price.")
    price_known = serializers.BooleanField()


class EstimateSerializer(serializers.Serializer):
    model = serializers.CharField()
    rows = serializers.IntegerField()
    prompt_chars = serializers.IntegerField()
    sampled_rows = serializers.IntegerField(help_text="Rows counted with countTokens.")
    method = serializers.ChoiceField(choices=["count_tokens", "chars_per_token"])
    tokens_per_char = serializers.FloatField()
    input_tokens = serializers.IntegerField()
    output_tokens_low = serializers.IntegerField(allow_null=True)
    output_tokens_high = serializers.IntegerField()
    thinking_tokens_high = serializers.IntegerField()
    currency = serializers.CharField(allow_null=True)
    price_known = serializers.BooleanField()
    cost_low = serializers.CharField(allow_null=True)
    cost_high = serializers.CharField(allow_null=True)
    batch_mode_cost_low = serializers.CharField(allow_null=True)
    batch_mode_cost_high = serializers.CharField(allow_null=True)
    seconds = serializers.IntegerField(allow_null=True)
    notes = serializers.ListField(child=serializers.CharField())
    summary = serializers.ListField(child=serializers.CharField())


class DraftUpdateSerializer(BatchUpdateSerializer):
    """What a draft may change besides the above; refused (409) once the batch has started."""

    DRAFT_ONLY = ("prompt", "system_instruction", "model", "temperature", "max_output_tokens",
                  "use_cache")

    prompt = _TextField(required=False)
    system_instruction = _TextField(required=False, allow_blank=True)
    model = _StringField(max_length=100, required=False, allow_blank=True)
    temperature = _NumberField(min_value=0, max_value=2, required=False, allow_null=True)
    max_output_tokens = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    use_cache = _BooleanField(required=False)


class SampleSerializer(serializers.Serializer):
    size = serializers.IntegerField(min_value=1, required=False,
                                    help_text="Rows to try (default 5; more than the batch "
                                              "has means all of them).")
    random = _BooleanField(required=False, default=False,
                                      help_text="A random sample instead of the first rows.")
    seed = serializers.IntegerField(required=False, allow_null=True, default=None,
                                    help_text="Seed of the random sample (implies random).")
    indexes = serializers.ListField(child=serializers.IntegerField(min_value=0),
                                    required=False, min_length=1,
                                    help_text="These rows instead of a sample.")


class SampleRunSerializer(serializers.Serializer):
    indexes = serializers.ListField(child=serializers.IntegerField())
    seed = serializers.IntegerField(allow_null=True)


class RerunSerializer(serializers.Serializer):
    indexes = serializers.ListField(child=serializers.IntegerField(min_value=0),
                                    min_length=1, max_length=100_000)


class NewVersionSerializer(serializers.Serializer):
    """application/json: a copy of the batch's rows."""

    name = _StringField(max_length=200, required=False, allow_blank=True, default="",
                        help_text="Default: the batch's name with (v2), (v3)...")


class NewVersionFileSerializer(NewVersionSerializer):
    """multipart/form-data: a corrected file in place of the rows."""

    file = serializers.FileField(help_text="A corrected file to use in place of the rows.")
    sheet = _StringField(max_length=200, required=False, allow_blank=True, default="")

    def validate_file(self, value):
        limit = settings.BATCH_MAX_UPLOAD_MB
        if limit and value.size > limit * 1024 * 1024:
            raise serializers.ValidationError(f"The file is larger than the {limit} MB limit.")
        return value


class ComparedRowSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    input = serializers.DictField()
    a_status = serializers.CharField(allow_null=True)
    a_output = serializers.CharField()
    b_status = serializers.CharField(allow_null=True)
    b_output = serializers.CharField()
    changed = serializers.BooleanField()
    changed_fields = serializers.ListField(child=serializers.CharField())


class ComparisonSerializer(serializers.Serializer):
    a = serializers.IntegerField(source="a.pk")
    b = serializers.IntegerField(source="b.pk")
    rows = serializers.IntegerField()
    changed = serializers.IntegerField()
    field_changes = serializers.DictField(child=serializers.IntegerField())
    count = serializers.IntegerField(source="listed")
    results = ComparedRowSerializer(source="page", many=True)


class CountsSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class ProviderJobSerializer(serializers.ModelSerializer):
    """A Gemini Batch Mode job holding some of the batch's rows."""

    state = serializers.CharField(source="state_label", read_only=True,
                                  help_text="SUBMITTING, PENDING, RUNNING, SUCCEEDED, FAILED, "
                                            "CANCELLED, EXPIRED (or NOT_SUBMITTED, LOST).")

    class Meta:
        model = ProviderJob
        fields = ["name", "state", "row_count", "byte_count", "input_file", "submitted_at",
                  "last_polled_at", "finished_at", "succeeded_rows", "failed_rows",
                  "returned_rows", "error"]
        read_only_fields = fields


class BatchSummarySerializer(serializers.ModelSerializer):
    """A batch in a list. `counts` and `progress` come from `batch.live`, set by the view."""

    owner = serializers.CharField(source="owner.get_username", read_only=True)
    model = serializers.CharField(source="model_name", read_only=True)
    priority = serializers.ChoiceField(source="priority_name", choices=PRIORITIES, read_only=True)
    counts = CountsSerializer(source="live.counts", read_only=True)
    processed = serializers.IntegerField(
        source="live.processed", read_only=True,
        help_text="Rows that ran (succeeded or failed); cancelled rows did not run.")
    progress = serializers.FloatField(
        source="live.percent", read_only=True,
        help_text="Percent of all rows processed, 0-100; cancelled rows do not count.")
    waiting_on_api_since = serializers.DateTimeField(
        source="api_waiting_since", read_only=True, allow_null=True,
        help_text="Set while the model API is unreachable and the batch waits for it.")
    spent = serializers.SerializerMethodField(help_text="Spend so far; null: price unknown.")

    class Meta:
        model = Batch
        fields = ["id", "name", "owner", "status", "source_filename", "model", "priority",
                  "total_rows", "counts", "processed", "progress", "waiting_on_api_since",
                  "created_at",
                  "started_at", "finished_at", "spent", "budget", "mode"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_spent(self, batch: Batch) -> str | None:
        if batch.unpriced_rows and not batch.costed_rows:
            return None  # price unknown, never $0
        return f"{batch.cost_spent:.6f}"


class BatchSerializer(BatchSummarySerializer):
    """One batch with its live figures (`batch.live` is a models.Progress)."""

    prompt = serializers.CharField(source="prompt_template", read_only=True)
    columns = serializers.ListField(child=serializers.CharField(), read_only=True,
                                    help_text="The input columns, in file order.")
    rows_per_minute = serializers.FloatField(source="live.rows_per_minute", read_only=True)
    eta_seconds = serializers.IntegerField(source="live.eta_seconds", read_only=True,
                                           allow_null=True,
                                           help_text="Null while the rate is unknown.")
    prompt_tokens = serializers.IntegerField(source="live.prompt_tokens", read_only=True)
    output_tokens = serializers.IntegerField(source="live.output_tokens", read_only=True)
    spend = serializers.SerializerMethodField()
    webhook_url = serializers.CharField(read_only=True,
                                        help_text="Receives this batch's events; empty: none.")
    from_cache = serializers.SerializerMethodField(
        help_text="Rows answered from the result cache and the tokens they did not cost.")
    warnings = serializers.SerializerMethodField(
        help_text="Notes about the file (only in the answer to the creation); later they are "
                  "part of last_error.")

    class Meta(BatchSummarySerializer.Meta):
        fields = BatchSummarySerializer.Meta.fields + [
            "prompt", "system_instruction", "temperature", "max_output_tokens", "concurrency",
            "max_retries", "conversation_column", "columns", "rows_per_minute", "eta_seconds",
            "prompt_tokens", "output_tokens", "paused", "cancel_requested", "updated_at",
            "last_error", "warnings", "output_fields", "response_schema", "webhook_url",
            "use_cache", "parent", "from_cache", "thinking", "thoughts_tokens", "cached_tokens",
            "spend", "fallback_online", "jobs", "language", "google_search", "url_context",
        ]
        read_only_fields = fields

    jobs = ProviderJobSerializer(source="provider_jobs", many=True, read_only=True,
                                 help_text="Batch mode: the provider jobs, oldest first.")

    output_fields = serializers.SerializerMethodField(
        help_text="The output columns; empty for a text batch.")
    response_schema = ResponseSchemaField(read_only=True)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_warnings(self, batch: Batch) -> list[str]:
        return list(getattr(batch, "warnings", []))

    @extend_schema_field(SpendSerializer)
    def get_spend(self, batch: Batch) -> dict:
        counts = batch.live.counts
        return costs.batch_spend(batch, counts["pending"] + counts["running"]).as_dict()

    @extend_schema_field(OUTPUT_FIELDS_SCHEMA)
    def get_output_fields(self, batch: Batch) -> list[dict]:
        return [f.as_dict() for f in batch.output_fields]

    @extend_schema_field({"type": "object", "properties": {
        "rows": {"type": "integer"}, "prompt_tokens_saved": {"type": "integer"},
        "output_tokens_saved": {"type": "integer"}}})
    def get_from_cache(self, batch: Batch) -> dict:
        figures = cache_figures(batch)
        return {"rows": figures.rows, "prompt_tokens_saved": figures.prompt_tokens_saved,
                "output_tokens_saved": figures.output_tokens_saved}


class ResultSerializer(serializers.ModelSerializer):
    input = serializers.DictField(read_only=True, help_text="The row as read from the file.")
    row = serializers.IntegerField(
        source="row_number", read_only=True,
        help_text="The row's line in the uploaded file (or its spreadsheet row), as error "
                  "messages and exports number it; `index` is its 0-based position.")
    data = serializers.JSONField(
        read_only=True, allow_null=True,
        help_text="Columns batches: the answer parsed and validated against the schema "
                  "(`?fields=` keeps only some); null for text batches and unfinished rows.")
    sources = serializers.SerializerMethodField(
        help_text="A grounded answer's web sources, in the model's order; empty: none.")

    class Meta:
        model = BatchResult
        fields = ["index", "row", "input", "prompt", "output", "status", "error", "attempts",
                  "prompt_tokens", "output_tokens", "latency_ms", "finish_reason",
                  "model_version", "started_at", "finished_at", "data", "cached", "sample",
                  "thoughts_tokens", "cached_tokens", "cost", "sources"]
        read_only_fields = fields


    @extend_schema_field(SOURCES_SCHEMA)
    def get_sources(self, row: BatchResult) -> list[dict]:
        return row.sources if isinstance(row.sources, list) else []


# A thinking option as the settings take it: off, low, default or a budget of 0 to 32768 tokens
# (costs.MAX_THINKING_BUDGET), or empty for the server's default.
THINKING_PATTERN = (r"^(off|low|default|0*([0-9]{1,4}|[12][0-9]{4}|3[01][0-9]{3}|32[0-6][0-9]{2}"
                    r"|327[0-5][0-9]|3276[0-8]))$")  # empty is allowed apart (allow_blank)


# DRF refuses NUL characters in text; the schema says so (empty is left to allow_blank).
NO_NUL = RegexValidator(r"^[^\x00]+$", "Null characters are not allowed.")


class UserSettingsSerializer(serializers.Serializer):
    """Your own defaults for new batches; a blank value means the server's default."""

    model = serializers.ChoiceField(choices=[""], required=False, allow_blank=True,
                                    help_text="Default model; empty: the server's.")
    system_instruction = _TextField(required=False, allow_blank=True, validators=[NO_NUL])
    language = serializers.ChoiceField(
        choices=["", *languages.NAMES], required=False, allow_blank=True,
        help_text="Default “answer in” language code; empty: the prompt's own.")
    concurrency = serializers.IntegerField(
        min_value=1, max_value=MAX_CONCURRENCY, required=False, allow_null=True,
        help_text="Default concurrency; null: 16. Above your cap (BATCH_MAX_CONCURRENCY) is "
                  "for staff (403).")
    thinking = _StringField(
        max_length=12, required=False, allow_blank=True,
        validators=[RegexValidator(THINKING_PATTERN, "Thinking must be off, low, default or a "
                                                     "number of tokens from 0 to 32768.")],
        help_text="Default thinking budget: off, low, default or a number of tokens; empty: off.")
    apply_overrides = _BooleanField(
        required=False,
        help_text="Always apply my system instruction: it goes before every new batch's own.")
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The deployment's models and caps, as they are when the schema or a request is made.
        self.fields["model"].choices = ["", *catalog.known_models()]
        cap = settings.BATCH_MAX_SYSTEM_INSTRUCTION_CHARS
        if cap:
            self.fields["system_instruction"] = _TextField(
                required=False, allow_blank=True, max_length=cap, validators=[NO_NUL],
                help_text="Default system instruction; with apply_overrides it goes before "
                          "every new batch's own.")


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(allow_null=True, read_only=True,
                                  help_text="Send as `Authorization: Token <token>`.")


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "description": "Messages per field; `line` and `column` locate an error in the file; "
                   "`detail` says why a body could not be parsed at all.",
    "properties": {
        "line": {"type": "integer"},
        "column": {"type": "string"},
        "non_field_errors": {"type": "array", "items": {"type": "string"}},
        "detail": {"type": "string"},
    },
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}
