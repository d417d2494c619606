"""The batch page's iterate panel: its forms (edit a draft, try a sample, make a new version)
and what it shows (the sample's rows, the cache's savings)."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from batches import iterations
from batches.iterations import DEFAULT_SAMPLE_SIZE
from batches.models import Batch, BatchResult
from batches.services import MAX_CONCURRENCY, MAX_RETRIES
from batches.web.forms import ACCEPTED_EXTENSIONS, _model_choices
from batches.web.results import answer_columns, decorate

SAMPLE_ROWS_SHOWN = 100
MAX_CHOSEN_ROWS = 10_000


class DraftForm(forms.Form):
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
                             strip=False)
    system_instruction = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}),
                                         required=False, strip=False)
    model = forms.ChoiceField(choices=_model_choices)
    temperature = forms.FloatField(required=False, min_value=0, max_value=2,
                                   widget=forms.NumberInput(attrs={"step": "0.1"}))
    max_output_tokens = forms.IntegerField(required=False, min_value=1)
    concurrency = forms.IntegerField(min_value=1, max_value=MAX_CONCURRENCY)
    max_retries = forms.IntegerField(min_value=0, max_value=MAX_RETRIES)
    always_call_model = forms.BooleanField(required=False, label="Always call the model")
    output_schema = forms.CharField(
        required=False, label="Output schema (JSON)",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "schema-text"}),
        help_text="Empty: the answer is text. A JSON Schema object makes it columns, as "
                  "Output on the new-batch page.")

    def clean_output_schema(self) -> dict | None:
        text = self.cleaned_data["output_schema"].strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise forms.ValidationError(
                f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno}).") from None

    @classmethod
    def for_batch(cls, batch) -> DraftForm:
        return cls(initial={
            "prompt": batch.prompt_template, "system_instruction": batch.system_instruction,
            "model": batch.model_name, "temperature": batch.temperature,
            "max_output_tokens": batch.max_output_tokens, "concurrency": batch.concurrency,
            "max_retries": batch.max_retries, "always_call_model": not batch.use_cache,
            "output_schema": (json.dumps(batch.response_schema, indent=2)
                              if batch.response_schema is not None else ""),
        })

    def service_kwargs(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["use_cache"] = not data.pop("always_call_model")
        data["response_schema"] = data.pop("output_schema")
        return data


def _parse_indexes(text: str) -> list[int]:
    """"3, 7-9 12" -> [3, 7, 8, 9, 12]."""
    out: list[int] = []
    for part in text.replace(",", " ").split():
        low, dash, high = part.partition("-")
        try:
            span = range(int(low), int(high) + 1) if dash else range(int(part), int(part) + 1)
        except ValueError:
            raise forms.ValidationError(
                f"“{part}” is not a row number or a range like 3-7.") from None
        if len(out) + len(span) > MAX_CHOSEN_ROWS:
            raise forms.ValidationError(f"Choose at most {MAX_CHOSEN_ROWS:,} rows.")
        out.extend(span)
    return out


class SampleForm(forms.Form):
    MODES = [("first", "the first rows"), ("random", "a random sample"),
             ("indexes", "these rows")]

    mode = forms.ChoiceField(choices=MODES, initial="first", widget=forms.RadioSelect)
    size = forms.IntegerField(min_value=1, initial=DEFAULT_SAMPLE_SIZE, required=False)
    seed = forms.IntegerField(required=False, min_value=0, help_text="Same seed, same rows.")
    indexes = forms.CharField(required=False,
                              help_text="Row numbers as the results show them, e.g. 2, 5, 10-12.")

    def clean(self):
        data = super().clean()
        if data.get("mode") == "indexes":
            data["index_list"] = _parse_indexes(data.get("indexes") or "")
            if not data["index_list"]:
                self.add_error("indexes", "Write the row numbers to try.")
        return data

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        if data["mode"] == "indexes":
            return {"row_numbers": data["index_list"]}
        kwargs: dict[str, Any] = {"size": data.get("size") or DEFAULT_SAMPLE_SIZE}
        if data["mode"] == "random":
            kwargs.update(random_sample=True, seed=data.get("seed"))
        return kwargs


class NewVersionForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    file = forms.FileField(required=False, help_text="Optional: a corrected file in place of "
                           "the rows.",
                           widget=forms.ClearableFileInput(attrs={"accept": ACCEPTED_EXTENSIONS}))


def sample_context(batch: Batch) -> dict:
    rows = list(batch.results.filter(sample=True).order_by("index")
                .defer("claim_token", "lease_expires_at")[:SAMPLE_ROWS_SHOWN])
    # The answer as the results table shows it: the text, or one cell per output field.
    decorate(rows, [], answer_columns(batch))
    running = any(r.status in (BatchResult.Status.PENDING, BatchResult.Status.RUNNING)
                  for r in rows)
    paid = [r for r in rows if r.status == BatchResult.Status.SUCCEEDED and not r.cached]
    return {"batch": batch, "sample_rows": rows, "sample_running": running and batch.is_draft,
            "sample_prompt_tokens": sum(r.prompt_tokens or 0 for r in paid),
            "sample_output_tokens": sum(r.output_tokens or 0 for r in paid),
            "sample_cached": sum(1 for r in rows if r.cached)}


def panel_context(batch: Batch) -> dict:
    """What the batch page's iterate panel needs."""
    context = {"draft_form": DraftForm.for_batch(batch) if batch.is_draft else None,
               "sample_form": SampleForm(), "version_form": NewVersionForm(),
               "cache": iterations.cache_figures(batch)}
    if batch.is_draft:
        context.update(sample_context(batch))
    return context
