"""Generated documents (PDFs with pypdf, PNGs by hand) and a storage fixture for the tests."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile


def pdf_bytes(pages: int = 1, title: str = "doc") -> bytes:
    """A PDF with `pages` blank pages; the title makes its bytes unique."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": title})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def encrypted_pdf_bytes() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def png_bytes(width: int = 4, height: int = 3, seed: int = 0) -> bytes:
    """A valid RGB PNG whose pixels depend on `seed`."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + bytes((seed + x + y) % 256 for x in range(width * 3))
                   for y in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


def upload(name: str, data: bytes) -> tuple[str, io.BytesIO]:
    return name, io.BytesIO(data)


def uploaded_file(name: str, data: bytes, content_type: str = "application/octet-stream"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def digest(data: bytes) -> str:
    """What the fake Gemini's answer says about a document."""
    return hashlib.sha256(data).hexdigest()[:16]


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def media(settings, tmp_path):
    """default_storage in a fresh folder; yields that folder."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = str(root)
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(root)}}}
    yield root


class S3Server:
    """moto's S3-compatible server on a loopback port, with one bucket, as a separate host's
    workers would reach it: plain HTTP, credentials from the environment."""

    BUCKET = "batchsite-test"
    REGION = "us-east-1"

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.client().create_bucket(Bucket=self.BUCKET)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.REGION,
                            aws_access_key_id="test", aws_secret_access_key="test")

    def keys(self) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.BUCKET)
        return sorted(obj["Key"] for obj in listed.get("Contents", []))

    def env(self) -> dict[str, str]:
        """The settings a worker process needs (see README, Documents)."""
        return {"STORAGE_S3_BUCKET": self.BUCKET, "STORAGE_S3_ENDPOINT_URL": self.endpoint,
                "STORAGE_S3_REGION": self.REGION, "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test"}

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def s3(settings, monkeypatch):
    """default_storage on a local S3-compatible server (this process and the workers)."""
    server = S3Server()
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": server.BUCKET, "endpoint_url": server.endpoint,
                    "region_name": server.REGION, "default_acl": None,
                    "file_overwrite": True}}}
    yield server
    server.stop()
