"""The new-batch page keeps the chosen file (staged uploads), says what would stop Create, and
offers a sheet picker: through Django's test client, htmx requests as the browser sends them."""

import io
import re
from datetime import timedelta

from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from openpyxl import Workbook

from batches.models import Batch, StagedUpload

HX = {"HTTP_HX_REQUEST": "true"}


def upload(text: str, name: str = "rows.csv") -> io.BytesIO:
    f = io.BytesIO(text.encode("utf-8"))
    f.name = name
    return f


def form_data(**overrides):
    data = {"prompt": "Say: {{text}}", "model": "gemini-2.5-flash", "concurrency": "4",
            "max_retries": "2", "priority": "1", "name": "", "system_instruction": "",
            "temperature": "", "max_output_tokens": "", "conversation_column": "", "sheet": ""}
    data.update(overrides)
    return data


def staged_token(body: str) -> str:
    return re.search(r'name="staged_upload" value="([^"]+)"', body).group(1)


def preview(client, **data):
    return client.post(reverse("batch_new_preview"), data, **HX).content.decode()


def test_typing_the_prompt_keeps_the_files_error_in_the_preview(client, user):
    client.force_login(user)
    png = io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    png.name = "picture.png"
    first = preview(client, file=png, prompt="")
    assert 'id="preview-file-error"' in first
    again = preview(client, staged_upload=staged_token(first), prompt="Describe {{x}}")
    assert 'id="preview-file-error"' in again
    assert "Choose a file" not in again
    assert re.search(r'id="create-button"[^>]* disabled', again)


def test_the_preview_reads_the_staged_file_while_the_prompt_is_typed(client, user):
    client.force_login(user)
    first = preview(client, file=upload("name\nAnn\nBob\n"), prompt="Hi {{name}}")
    assert "Hi Ann" in first
    staged = StagedUpload.objects.get(owner=user)
    assert default_storage.exists(staged.storage_name)
    body = preview(client, staged_upload=str(staged.token), prompt="Bye {{name}}")
    assert "Bye Ann" in body and "Bye Bob" in body
    # The preview numbers rows as the file does: the header is line 1.
    assert "Row 2" in body and "Row 3" in body


def test_a_refused_create_comes_back_with_the_file_and_a_fixed_prompt_creates_from_it(
        client, user):
    client.force_login(user)
    token = staged_token(preview(client, file=upload("text\nhello\nworld\n", "greet.csv"),
                                 prompt=""))
    refused = client.post(reverse("batch_new"), form_data(prompt="Say {{nope}}",
                                                          staged_upload=token))
    content = refused.content.decode()
    assert refused.status_code == 200 and Batch.objects.count() == 0
    assert "Using <strong>greet.csv</strong>" in content and staged_token(content) == token
    assert "Hello" not in content and 'data-insert-column="text"' in content

    created = client.post(reverse("batch_new"), form_data(prompt="Say {{text}}",
                                                          staged_upload=token))
    batch = Batch.objects.get(owner=user)
    assert created.status_code == 302
    assert batch.source_filename == "greet.csv" and batch.total_rows == 2
    assert not StagedUpload.objects.exists()


def test_another_users_staged_file_does_not_exist_for_them(client, user, other_user):
    client.force_login(user)
    token = staged_token(preview(client, file=upload("text\nhello\n"), prompt=""))
    client.force_login(other_user)
    body = preview(client, staged_upload=token, prompt="Say {{text}}")
    assert "Choose a file" in body and "hello" not in body
    response = client.post(reverse("batch_new"), form_data(staged_upload=token))
    assert response.status_code == 200 and "Choose a file." in response.content.decode()
    assert Batch.objects.count() == 0


def test_an_expired_staged_file_is_gone_and_cleared_when_the_next_one_is_staged(client, user):
    client.force_login(user)
    token = staged_token(preview(client, file=upload("text\nhello\n"), prompt=""))
    old = StagedUpload.objects.get(token=token)
    StagedUpload.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(1))
    assert "Choose a file" in preview(client, staged_upload=token, prompt="")
    preview(client, file=upload("text\nagain\n"), prompt="")
    assert not StagedUpload.objects.filter(pk=old.pk).exists()
    assert not default_storage.exists(old.storage_name)


def test_an_unknown_placeholder_is_an_error_that_disables_create(client, user):
    client.force_login(user)
    body = preview(client, file=upload("text\nhello\n"), prompt="Say {{nope}}")
    unknown = body.split('id="preview-unknown"', 1)[1].split("</div>", 1)[0]
    assert "Error" in unknown and "would be left empty" not in unknown
    assert re.search(r'id="create-button"[^>]* disabled', body)
    fixed = preview(client, staged_upload=staged_token(body), prompt="Say {{text}}")
    assert not re.search(r'id="create-button"[^>]* disabled', fixed)


def test_a_prompt_without_a_placeholder_warns_that_every_row_gets_the_same_prompt(client, user):
    client.force_login(user)
    body = preview(client, file=upload("text\nhello\n"), prompt="Write a haiku.")
    assert "every row will get the same prompt" in body
    assert not re.search(r'id="create-button"[^>]* disabled', body)


def test_the_column_chips_come_with_the_prompt_not_after_create(client, user):
    client.force_login(user)
    body = preview(client, file=upload("text,mood\nhello,ok\n"), prompt="")
    chips = body.split('id="prompt-columns"', 1)[1]
    assert 'hx-swap-oob="true"' in chips.split(">", 1)[0]
    page = client.post(reverse("batch_new"), form_data(prompt="{{nope}}",
                                                       staged_upload=staged_token(body)))
    content = page.content.decode()
    assert content.index('data-insert-column="mood"') < content.index('id="create-button"')
    assert content.index('id="id_prompt"') < content.index('data-insert-column="mood"')


def xlsx_with_sheets() -> io.BytesIO:
    workbook = Workbook()
    first = workbook.active
    first.title = "Notes"
    first.append(["note"])
    first.append(["not this one"])
    second = workbook.create_sheet("Reviews")
    second.append(["review"])
    second.append(["great"])
    out = io.BytesIO()
    workbook.save(out)
    out.seek(0)
    out.name = "book.xlsx"
    return out


def test_a_workbook_with_several_sheets_offers_a_picker_and_previews_the_chosen_sheet(
        client, user):
    client.force_login(user)
    body = preview(client, file=xlsx_with_sheets(), prompt="Rate {{review}}")
    assert '<select name="sheet"' in body
    assert 'value="Reviews"' in body and "{{review}}" in body.split('id="preview-unknown"')[1]
    chosen = preview(client, staged_upload=staged_token(body), sheet="Reviews",
                     prompt="Rate {{review}}")
    assert "Rate great" in chosen and 'id="preview-unknown"' not in chosen
    assert re.search(r'<option value="Reviews" selected>', chosen)
    created = client.post(reverse("batch_new"), form_data(
        prompt="Rate {{review}}", sheet="Reviews", staged_upload=staged_token(body)))
    assert created.status_code == 302
    batch = Batch.objects.get(owner=user)
    assert batch.columns == ["review"]
    # The spreadsheet row: the header is row 1.
    assert batch.results.get().row_number == 2


def test_a_prompt_typed_with_crlf_is_stored_with_newlines(client, user):
    client.force_login(user)
    response = client.post(reverse("batch_new"), form_data(
        file=upload("text\nhello\n"), prompt="Line one\r\nSay {{text}}",
        system_instruction="Be brief.\r\nVery."))
    assert response.status_code == 302
    batch = Batch.objects.get(owner=user)
    assert batch.prompt_template == "Line one\nSay {{text}}"
    assert batch.system_instruction == "Be brief.\nVery."
    assert batch.results.get().prompt == "Line one\nSay hello"


def test_help_texts_and_errors_are_linked_to_their_fields(client, user):
    client.force_login(user)
    page = client.get(reverse("batch_new")).content.decode()
    for described in re.findall(r'aria-describedby="([^"]+)"', page):
        for ident in described.split():
            assert f'id="{ident}"' in page, ident
    refused = client.post(reverse("batch_new"), form_data(
        file=upload("text\nhello\n"), concurrency="0")).content.decode()
    field = refused.split('id="field-concurrency"', 1)[1].split("</div>", 1)[0]
    assert 'aria-invalid="true"' in field
    assert 'aria-describedby="id_concurrency_error id_concurrency_helptext"' in field
    assert 'id="id_concurrency_error"' in field


def test_choosing_another_file_replaces_the_staged_one(client, user):
    client.force_login(user)
    token = staged_token(preview(client, file=upload("text\nfirst\n"), prompt=""))
    old = StagedUpload.objects.get(token=token)
    body = preview(client, file=upload("text\nsecond\n", "second.csv"), staged_upload=token,
                   prompt="{{text}}")
    assert "second" in body and staged_token(body) != token
    assert list(StagedUpload.objects.values_list("filename", flat=True)) == ["second.csv"]
    assert not default_storage.exists(old.storage_name)
