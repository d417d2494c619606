"""Published Gemini prices for the models in GEMINI_MODELS (Gemini Developer API, paid tier, USD
per million tokens, text input).

Source: https://ai.google.dev/gemini-api/docs/pricing, as transcribed in the public pricing
record api-evangelist/gemini plans/gemini-plans-pricing.yml (read 2026-09-20) and the Google AI
developer forum's quotes of the same page (2.5 Pro context caching $0.125 / $0.25); taken
2026-11-29. Thinking tokens are billed as output tokens on these models; the Batch API costs
50 % of these prices. `valid_from` is each model's general-availability date. Operators keep the
table current in the admin (Model prices); this migration only seeds it.
"""

from datetime import datetime, timezone
from decimal import Decimal

from django.db import migrations

SOURCE = "https://ai.google.dev/gemini-api/docs/pricing (taken 2026-11-29)"

PRICES = [
    # model, valid from, input, output, cached input, long-context threshold, long input,
    # long output, long cached input
    ("gemini-2.5-pro", datetime(2025, 6, 17, tzinfo=timezone.utc), "1.25", "10.00", "0.125",
     200_000, "2.50", "15.00", "0.25"),
    ("gemini-2.5-flash", datetime(2025, 6, 17, tzinfo=timezone.utc), "0.30", "2.50", "0.03",
     None, None, None, None),
    ("gemini-2.5-flash-lite", datetime(2025, 7, 22, tzinfo=timezone.utc), "0.10", "0.40", "0.01",
     None, None, None, None),
]


def _dec(value):
    return Decimal(value) if value is not None else None


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("batches", "ModelPrice")
    for model, valid_from, inp, out, cached, threshold, long_in, long_out, long_cached in PRICES:
        ModelPrice.objects.get_or_create(model=model, valid_from=valid_from, defaults=dict(
            currency="USD", input_per_million=_dec(inp), output_per_million=_dec(out),
            cached_input_per_million=_dec(cached), batch_discount_percent=Decimal(50),
            long_context_threshold=threshold, long_input_per_million=_dec(long_in),
            long_output_per_million=_dec(long_out), long_cached_input_per_million=_dec(long_cached),
            source=SOURCE,
        ))


def unseed(apps, schema_editor):
    ModelPrice = apps.get_model("batches", "ModelPrice")
    for model, valid_from, *_ in PRICES:
        ModelPrice.objects.filter(model=model, valid_from=valid_from, source=SOURCE).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("batches", "0007_costs"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
