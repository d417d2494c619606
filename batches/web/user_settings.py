"""The settings page: the signed-in user's own defaults for new batches (batches.preferences).

Only the user's own row is ever read or written (no id in the URL). The form checks types;
services.user_settings_update checks the values and names the field it refuses.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from batches import preferences, services
from batches.web.forms import LANGUAGE_CHOICES, THINKING_CHOICES, _model_choices


class UserSettingsForm(forms.Form):
    model = forms.ChoiceField(required=False, label="Default model")
    system_instruction = forms.CharField(
        required=False, label="Default system instruction",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="New batches start with it.")
    apply_overrides = forms.BooleanField(
        required=False, label="Always apply my system instruction",
        help_text="It goes before every new batch's own system instruction (page, API and "
                  "command line), instead of only filling an empty one.")
    language = forms.ChoiceField(choices=LANGUAGE_CHOICES, required=False,
                                 label="Default “Answer in” language")
    concurrency = forms.IntegerField(required=False, min_value=1,
                                     max_value=services.MAX_CONCURRENCY,
                                     label="Default concurrency", help_text="Empty: 16.")
    thinking = forms.CharField(
        required=False, max_length=12, label="Default thinking budget",
        help_text="off, low, default (the model decides) or a number of tokens; empty: off.",
        widget=forms.TextInput(attrs={"list": "thinking-choices", "autocomplete": "off"}))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [("", "The server's default"), *_model_choices()]

    thinking_choices = THINKING_CHOICES


@login_required
@require_http_methods(["GET", "POST"])
def user_settings(request: HttpRequest) -> HttpResponse:
    row = preferences.stored(request.user)
    if request.method == "POST":
        form = UserSettingsForm(request.POST)
        if form.is_valid():
            try:
                services.user_settings_update(user=request.user, **form.cleaned_data)
            except services.InvalidInput as err:
                form.add_error(err.field if err.field in form.fields else None, err.message)
            else:
                messages.success(request, "Saved: new batches start from these settings.")
                return redirect("user_settings")
    else:
        form = UserSettingsForm(initial={
            "model": row.model, "system_instruction": row.system_instruction,
            "apply_overrides": row.apply_overrides, "language": row.language,
            "concurrency": row.concurrency, "thinking": row.thinking})
    return render(request, "batches/user_settings.html", {"form": form})
