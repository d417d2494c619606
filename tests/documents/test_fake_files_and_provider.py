"""The fake Gemini's Files API and document parts, driven by the real google-genai client
through the provider, and the unpacking rules for ZIPs."""

from __future__ import annotations

import asyncio
import io
import zipfile

import pytest

from batches.documents import DocumentError
from batches.documents.unpack import Limits, files_in
from batches.fake_gemini import FakeGemini
from batches.providers import Attachment, Request, RetryableError
from batches.providers.gemini import GeminiProvider
from tests.helpers.documents import digest, pdf_bytes, png_bytes


@pytest.fixture
def server():
    with FakeGemini() as fake:
        yield fake


def run(coro):
    return asyncio.run(coro)


def test_inline_documents_are_answered_with_their_digest_and_pages(server):
    provider = GeminiProvider(api_key="k", base_url=server.url)
    pdf, png = pdf_bytes(3, "x"), png_bytes()
    reply = run(provider.generate(Request(model="m", prompt="Read", documents=(
        Attachment("application/pdf", data=pdf), Attachment("image/png", data=png)))))
    assert reply.text == (f"ECHO: Read [application/pdf sha256:{digest(pdf)} {len(pdf)} bytes "
                          f"3 pages] [image/png sha256:{digest(png)} {len(png)} bytes]")


def test_an_uploaded_file_is_fetched_and_answered_by_its_uri(server):
    provider = GeminiProvider(api_key="k", base_url=server.url)
    pdf = pdf_bytes(2, "up")
    uploaded = run(provider.upload_file(pdf, mime_type="application/pdf", display_name="a.pdf"))
    assert uploaded.uri.startswith(server.url + "/v1beta/files/") and uploaded.expires_at
    file_id = uploaded.uri.rsplit("/", 1)[1]
    got = run(provider._client.aio.files.get(name=f"files/{file_id}"))
    assert got.display_name == "a.pdf" and got.size_bytes == len(pdf) and got.state == "ACTIVE"
    reply = run(provider.generate(Request(model="m", prompt="Read", documents=(
        Attachment("application/pdf", file_uri=uploaded.uri),))))
    assert f"sha256:{digest(pdf)} {len(pdf)} bytes 2 pages]" in reply.text
    assert server.files.snapshot()["parts_file"] == 1


def test_the_marker_fails_one_files_upload_once(server):
    server.configure(fail_upload_once=["flaky"])
    provider = GeminiProvider(api_key="k", base_url=server.url)
    with pytest.raises(RetryableError, match="503"):
        run(provider.upload_file(b"hello", mime_type="text/plain", display_name="flaky.txt"))
    assert run(provider.upload_file(b"hello", mime_type="text/plain", display_name="flaky.txt"))
    assert run(provider.upload_file(b"hello", mime_type="text/plain", display_name="other.txt"))
    assert server.files.snapshot()["uploads_failed"] == 1


def test_an_unknown_or_expired_file_is_refused(server):
    server.configure(file_ttl_s=0)
    provider = GeminiProvider(api_key="k", base_url=server.url)
    uploaded = run(provider.upload_file(b"hi", mime_type="text/plain", display_name="a.txt"))
    with pytest.raises(Exception) as info:
        run(provider.generate(Request(model="m", prompt="Read", documents=(
            Attachment("text/plain", file_uri=uploaded.uri),))))
    assert "permission to access the File" in str(info.value)


LIMITS = Limits(max_files=5, max_file_bytes=1000, max_total_bytes=3000)


def zip_of(entries: dict[str, bytes], **kwargs) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            for key, value in kwargs.get(name, {}).items():
                setattr(info, key, value)
            zf.writestr(info, data)
    return out.getvalue()


def unpack(name: str, data: bytes, limits: Limits = LIMITS) -> list[tuple[str, bytes]]:
    return list(files_in([(name, io.BytesIO(data))], limits))


def test_a_zip_keeps_its_inner_paths_and_skips_folders_and_hidden_files():
    data = zip_of({"a/b.txt": b"x", "a/.DS_Store": b"junk", "__MACOSX/a/._b.txt": b"junk",
                   "c.txt": b"y"})
    assert unpack("docs.zip", data) == [("a/b.txt", b"x"), ("c.txt", b"y")]


@pytest.mark.parametrize("entry,attrs,message", [
    ("/etc/passwd", {}, "points outside the archive"),
    ("C:/evil.txt", {}, "points outside the archive"),
    ("a/../../evil.txt", {}, "points outside the archive"),
    ("link.txt", {"external_attr": 0o120777 << 16}, "symbolic link"),
    ("inner.zip", {}, "nested archives"),
    ("big.txt", {}, "limit is"),
])
def test_unsafe_zip_entries_refuse_the_whole_zip(entry, attrs, message):
    content = b"x" * 2000 if entry == "big.txt" else b"data"
    with pytest.raises(DocumentError, match=message):
        unpack("evil.zip", zip_of({"ok.txt": b"fine", entry: content}, **{entry: attrs}))


def test_a_zip_bomb_is_refused_before_it_is_inflated():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.txt", b"0" * 50_000)
    assert len(out.getvalue()) < LIMITS.max_file_bytes
    with pytest.raises(DocumentError,
                       match=r"bomb\.zip: bomb\.txt is 49 KB; the limit is 1 KB per file"):
        unpack("bomb.zip", out.getvalue())


def test_a_damaged_zip_is_named():
    with pytest.raises(DocumentError, match=r"broken\.zip is a damaged ZIP"):
        unpack("broken.zip", b"PK\x03\x04" + b"\x00" * 40)
