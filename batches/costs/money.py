"""Money as Decimal (never float): nanos (10^-9 of the currency unit) inside the shared store,
Decimal everywhere else, and how an amount reads on a page."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

NANO = Decimal("0.000000001")
NANOS_PER_UNIT = 1_000_000_000
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}
PRICE_UNKNOWN = "price unknown"


def to_nanos(amount: Decimal | int | str, *, up: bool = False) -> int:
    """An amount as whole nanos; `up` rounds a reservation up so it never falls short."""
    value = Decimal(amount) * NANOS_PER_UNIT
    return int(value.to_integral_value(ROUND_CEILING if up else ROUND_HALF_UP))


def from_nanos(nanos: int) -> Decimal:
    return (Decimal(nanos) / NANOS_PER_UNIT).quantize(NANO)


def parse_amount(value: object) -> Decimal:
    """A user's amount ("5", "5.00", "$5") as a Decimal >= 0; ValueError naming the problem."""
    text = str(value).strip().lstrip("$€£").replace(",", "") if value is not None else ""
    try:
        amount = Decimal(text)
    except ArithmeticError:
        raise ValueError(f"{value!r} is not an amount of money (e.g. 5 or 12.50).") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{value!r} is not an amount of money (e.g. 5 or 12.50).")
    if amount >= Decimal(10) ** 8:
        raise ValueError("The amount is too large (at most 99,999,999.99).")
    return amount.quantize(Decimal("0.000001"))


def format_money(amount: Decimal | None, currency: str = "USD") -> str:
    """"$4.98"; sums under a cent keep their first significant digits ("$0.00042");
    None is "price unknown", never $0."""
    if amount is None:
        return PRICE_UNKNOWN
    amount = Decimal(amount)
    symbol = SYMBOLS.get(currency, "")
    suffix = "" if symbol else f" {currency}"
    if amount == 0 or abs(amount) >= Decimal("0.01"):
        text = f"{amount.quantize(Decimal('0.01'), ROUND_HALF_UP):,}"
    else:
        text = f"{amount.quantize(Decimal('0.000001'), ROUND_HALF_UP):f}".rstrip("0")
    return f"{symbol}{text}{suffix}"
