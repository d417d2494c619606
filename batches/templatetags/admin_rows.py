"""{% load admin_rows %}: a changelist's rows written with the per-column work done once.

Django's `result_list` tag builds every cell through `items_for_result`, which looks the column
up, reverses the change URL and merges the preserved filters for each link, and escapes through
`format_html`, cell by cell: on the results changelist (100 rows) that was more than half of the
request's CPU. `fast_result_list` writes the same markup (tests/test_admin.py compares the page
with Django's) with each column resolved once and the link's URL reversed once per page; each
value is still formatted by Django's own `display_for_field` / `display_for_value`. Changelists it
does not cover (popups, list_editable forms, columns that are neither model fields nor admin
methods) go through Django's own path."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

from django import template
from django.contrib.admin.templatetags.admin_list import (
    ResultList,
    _coerce_field_name,
    result_headers,
    result_hidden_fields,
    results,
)
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import display_for_field, display_for_value, lookup_field
from django.core.exceptions import ObjectDoesNotExist
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# Stands for the primary key in the change URL reversed once per page (any text matches the
# admin's `<path:object_id>/change/` pattern, so the preserved filters merge as for a real one).
_PK = "batchsite-pk-0f3c"


@register.inclusion_tag("admin/change_list_results.html")
def fast_result_list(cl) -> dict[str, Any]:
    """Django's `result_list` context, with the rows from `_rows`."""
    headers = list(result_headers(cl))
    return {
        "cl": cl,
        "result_hidden_fields": list(result_hidden_fields(cl)),
        "result_headers": headers,
        "num_sorted_fields": sum(1 for h in headers if h["sortable"] and h["sorted"]),
        "results": list(_rows(cl)),
    }


def _rows(cl) -> Iterator[ResultList]:
    objects = list(cl.result_list)
    columns = None if cl.formset or cl.is_popup or not objects else _columns(cl, objects[0])
    if columns is None:
        yield from results(cl)
        return
    for obj in objects:
        yield ResultList(None, [column(obj) for column in columns])


def _columns(cl, sample) -> list[Callable[[Any], SafeString]] | None:
    """One function per column that writes its cell as items_for_result would, or None if a
    column is of a kind this does not cover."""
    columns = []
    first = True  # the first link column is a <th>
    link_template = _link_template(cl)
    for index, name in enumerate(cl.list_display):
        try:
            f, attr, _ = lookup_field(name, sample, cl.model_admin)
        except ObjectDoesNotExist:
            return None
        if f is None and not (callable(attr) and getattr(attr, "__self__", None)
                              is cl.model_admin):
            return None  # a model property, a callable or a related lookup
        links = cl.list_display_links
        link = links is not None and ((first and not links) or name in links)
        if link and link_template is None:
            return None
        tag = "th" if link and first else "td"
        first = first and not link
        columns.append(_column(cl, name, index, f, attr, link, tag, link_template))
    return columns


def _column(cl, name: str, index: int, f, attr, link: bool, tag: str,
            link_template: str | None) -> Callable[[Any], SafeString]:
    admin_empty = cl.model_admin.get_empty_value_display()
    empty = getattr(attr, "empty_value_display", admin_empty)
    base_classes = [f"field-{_coerce_field_name(name, index)}"]
    classes = ["action-checkbox"] if name == "action_checkbox" else list(base_classes)
    plain = f is None or f.auto_created
    if not plain and isinstance(f, (models.DateField, models.TimeField, models.ForeignKey)):
        classes.append("nowrap")
    related = not plain and isinstance(f.remote_field, models.ManyToOneRel)
    boolean = getattr(attr, "boolean", False)
    pk_name = cl.lookup_opts.pk.attname

    def shown(obj) -> tuple[Any, list[str]]:
        value = attr(obj) if f is None else getattr(obj, name)
        if isinstance(value, str) and value.strip() == "":
            value = ""
        if plain:
            if isinstance(value, (datetime.date, datetime.time)):
                return display_for_value(value, empty, boolean), [*classes, "nowrap"]
            return display_for_value(value, empty, boolean), classes
        if related:
            related_obj = getattr(obj, f.name)
            return (empty if related_obj is None else related_obj), classes
        return display_for_field(value, f, empty, avoid_link=link), classes

    def cell(obj) -> SafeString:
        try:
            value, cell_classes = shown(obj)
        except ObjectDoesNotExist:  # as items_for_result: the admin's empty value, plain class
            value, cell_classes = admin_empty, base_classes
        text = conditional_escape(value)
        if link:
            url = link_template.replace(_PK, str(getattr(obj, pk_name)), 1)
            text = f'<a href="{conditional_escape(url)}">{text}</a>'
        return mark_safe(f'<{tag} class="{" ".join(cell_classes)}">{text}</{tag}>')

    return cell


def _link_template(cl) -> str | None:
    """The change URL of a row with `_PK` for its key, the preserved filters merged as Django
    merges them; None when keys are not plain integers (their quoting is reverse()'s)."""
    if cl.to_field or not isinstance(cl.lookup_opts.pk, models.IntegerField):
        return None
    try:
        url = reverse(f"admin:{cl.opts.app_label}_{cl.opts.model_name}_change", args=(_PK,),
                      current_app=cl.model_admin.admin_site.name)
    except NoReverseMatch:
        return None
    return add_preserved_filters({"preserved_filters": cl.preserved_filters, "opts": cl.opts},
                                 url)
