"""{% load batch_rows %}: the rows pages repeat, built by batches/web/rows.py."""

from django import template
from django.utils.safestring import SafeString

from batches.web import rows

register = template.Library()


@register.simple_tag(takes_context=True)
def result_row(context, row, oob: bool = False) -> SafeString:
    """A results table row, with the page's batch, path (where its forms come back to) and
    CSRF token."""
    return rows.result_row(row, batch=context["batch"], next_path=context.get("current_path", ""),
                           csrf_token=context.get("csrf_token"), oob=oob)


@register.simple_tag
def dashboard_row(row, show_owner: bool) -> SafeString:
    return rows.dashboard_row(row, show_owner=show_owner)


@register.simple_tag
def status_badge(batch) -> SafeString:
    return rows.status_badge(batch)


@register.simple_tag
def row_sources(row) -> SafeString:
    return rows.row_sources(row)
