"""`{{column}}` prompt templates: parse once, validate against the header, render per row.

User text never goes through Django's template engine: the only syntax is `{{ name }}`, where
name is any column name (spaces and punctuation allowed) with surrounding whitespace ignored.
`{{file:column}}` names a column of file names: it renders as the file name, and the row's
uploaded file with that name is attached to the request (see batches.documents).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

OPEN, CLOSE = "{{", "}}"
FILE_PREFIX = "file:"


class TemplateError(ValueError):
    """The template is unusable; str(err) says why."""


@dataclass(frozen=True)
class Template:
    source: str
    # Alternating literal text and placeholder names: literals at even positions.
    parts: tuple[str, ...]

    @property
    def placeholders(self) -> list[str]:
        """Placeholder names in order of first appearance."""
        return list(dict.fromkeys(self.parts[1::2]))

    @property
    def file_columns(self) -> list[str]:
        """Columns named by `{{file:column}}`, in order of first appearance."""
        return [_file_column(n) for n in self.placeholders if _file_column(n) is not None]

    @property
    def columns(self) -> list[str]:
        """Every column the template reads, file columns included."""
        return list(dict.fromkeys(_file_column(n) or n for n in self.placeholders))

    def validate(self, columns: Iterable[str]) -> None:
        """Raise TemplateError naming every placeholder that is not a column."""
        known = set(columns)
        unknown = [name for name in self.placeholders
                   if name not in known and _file_column(name) not in known]
        if unknown:
            names = ", ".join(f"{{{{{n}}}}}" for n in unknown)
            listed = ", ".join(columns) if known else "(none)"
            noun = "is not a column" if len(unknown) == 1 else "are not columns"
            raise TemplateError(f"{names} {noun} of the file. The columns are: {listed}.")

    def render(self, row: Mapping[str, object]) -> str:
        out = []
        for i, part in enumerate(self.parts):
            if i % 2 == 0:
                out.append(part)
            elif part not in row and _file_column(part) is not None:
                out.append(format_value(row.get(_file_column(part))))
            else:
                out.append(format_value(row.get(part)))
        return "".join(out)


def _file_column(name: str) -> str | None:
    if name.startswith(FILE_PREFIX) and name[len(FILE_PREFIX):].strip():
        return name[len(FILE_PREFIX):].strip()
    return None


def format_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def parse(source: str) -> Template:
    if not source or not source.strip():
        raise TemplateError("The prompt is empty.")
    pieces = split(source)
    for name in pieces[1::2]:
        if not name:
            raise TemplateError(
                "The prompt has an empty placeholder {{}}; put a column name inside."
            )
    return Template(source=source, parts=tuple(pieces))


def split(source: str) -> list[str]:
    """Literal text and stripped placeholder names, alternating, in one pass over `source`.

    A scan with str.find instead of a regular expression: `\\{\\{\\s*(.*?)\\s*\\}\\}` backtracks
    cubically on an unclosed `{{` followed by whitespace (7 s for 2,000 spaces). An unclosed
    `{{` is literal text, as it was for the expression."""
    pieces: list[str] = []
    literal_start = pos = 0
    while (start := source.find(OPEN, pos)) != -1:
        end = source.find(CLOSE, start + len(OPEN))
        if end == -1:
            break
        pieces.append(source[literal_start:start])
        pieces.append(source[start + len(OPEN):end].strip())
        literal_start = pos = end + len(CLOSE)
    pieces.append(source[literal_start:])
    return pieces
