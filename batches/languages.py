"""The languages a batch may ask its answers in ("Answer in"), and the one line it adds.

"" (the default) adds nothing: the model answers in the prompt's own language. A code adds one
line to the end of the system instruction the model is sent; the batch stores the code, not the
line, so a new version of the batch does not add it twice. Imports nothing of the project.
"""

from __future__ import annotations

# BCP 47 codes with their English names; the list is short on purpose (the form's choices).
LANGUAGES: tuple[tuple[str, str], ...] = (
    ("ar", "Arabic"), ("bn", "Bengali"), ("cs", "Czech"), ("da", "Danish"), ("de", "German"),
    ("el", "Greek"), ("en", "English"), ("es", "Spanish"), ("fa", "Persian"),
    ("fi", "Finnish"), ("fr", "French"), ("he", "Hebrew"), ("hi", "Hindi"),
    ("hu", "Hungarian"), ("id", "Indonesian"), ("it", "Italian"), ("ja", "Japanese"),
    ("ko", "Korean"), ("nl", "Dutch"), ("no", "Norwegian"), ("pl", "Polish"),
    ("pt", "Portuguese"), ("ro", "Romanian"), ("ru", "Russian"), ("sv", "Swedish"),
    ("sw", "Swahili"), ("th", "Thai"), ("tr", "Turkish"), ("uk", "Ukrainian"),
    ("vi", "Vietnamese"), ("zh", "Chinese"),
)
NAMES = dict(LANGUAGES)
PROMPT_LANGUAGE = "The prompt's own language"


class UnknownLanguage(ValueError):
    """Not a code of LANGUAGES."""


def parse(value: object) -> str:
    """A language code of LANGUAGES, or "" for the prompt's own; UnknownLanguage otherwise."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UnknownLanguage("Language must be a language code such as \"fr\", or empty.")
    code = value.strip()
    if code and code not in NAMES:
        raise UnknownLanguage(f"Unknown language {code[:20]!r}; use one of "
                              f"{', '.join(NAMES)}, or empty for the prompt's own language.")
    return code


def name_of(code: str) -> str:
    return NAMES.get(code, PROMPT_LANGUAGE) if code else PROMPT_LANGUAGE


def instruction_line(code: str) -> str:
    """The line the language adds to the system instruction ("" for none)."""
    if not code:
        return ""
    return f"Write your answer in {NAMES[code]}."


def with_language(system_instruction: str, code: str) -> str:
    """The system instruction the model is sent: the batch's own, then the language line."""
    line = instruction_line(code)
    if not line:
        return system_instruction
    return f"{system_instruction}\n\n{line}" if system_instruction else line
