import pytest

from batches.prompts import TemplateError, parse


def test_it_renders_placeholders_with_row_values():
    assert parse("Summarise: {{text}}").render({"text": "hello"}) == "Summarise: hello"


def test_it_tolerates_whitespace_inside_braces():
    assert parse("{{ name }} / {{name}} / {{  name\t}}").render({"name": "x"}) == "x / x / x"


def test_column_names_may_contain_spaces_and_punctuation():
    template = parse("Q: {{ Customer name (full) }}, {{e-mail:addr}}")
    assert template.placeholders == ["Customer name (full)", "e-mail:addr"]
    assert template.render({"Customer name (full)": "Ann", "e-mail:addr": "a@b"}) == "Q: Ann, a@b"


def test_a_missing_value_renders_empty():
    assert parse("[{{a}}][{{b}}]").render({"a": "1"}) == "[1][]"


def test_non_string_values_render_as_json_or_text():
    template = parse("{{n}} {{obj}} {{flag}}")
    rendered = template.render({"n": 3, "obj": {"k": [1, "é"]}, "flag": True})
    assert rendered == '3 {"k": [1, "é"]} true'


def test_validation_names_unknown_placeholders_and_lists_the_columns():
    with pytest.raises(TemplateError) as err:
        parse("{{text}} {{missing}} {{other}}").validate(["text", "id"])
    message = str(err.value)
    assert "{{missing}}, {{other}} are not columns" in message
    assert "The columns are: text, id." in message


def test_validation_passes_when_every_placeholder_is_a_column():
    parse("{{a}} and {{ b }}").validate(["a", "b", "c"])


def test_a_template_without_placeholders_is_valid():
    assert parse("Same prompt for every row").render({"x": "1"}) == "Same prompt for every row"


def test_django_template_syntax_is_not_interpreted():
    template = parse("{% load static %}{{ text }}{# c #}{{ text|upper }}")
    assert template.placeholders == ["text", "text|upper"]
    assert template.render({"text": "a"}) == "{% load static %}a{# c #}"


@pytest.mark.parametrize("source", ["", "   \n"])
def test_an_empty_prompt_is_rejected(source):
    with pytest.raises(TemplateError, match="empty"):
        parse(source)


def test_an_empty_placeholder_is_rejected():
    with pytest.raises(TemplateError, match="empty placeholder"):
        parse("Hello {{ }}")


def test_a_placeholder_spanning_lines_is_one_name():
    assert parse("{{\nname\n}}").placeholders == ["name"]


def test_parsing_a_one_megabyte_unclosed_placeholder_takes_linear_time():
    import time

    started = time.perf_counter()
    template = parse("{{" + " " * 1_000_000)
    assert time.perf_counter() - started < 0.5
    assert template.placeholders == []


def test_the_scan_reads_placeholders_like_the_documented_syntax():
    template = parse("a {{ x }}}} b {{{y}} c {{ z")
    assert template.parts == ("a ", "x", "}} b ", "{y", " c {{ z")
