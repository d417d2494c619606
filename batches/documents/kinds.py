"""What a file is, decided by its bytes (magic numbers), never by its name, and the checks each
kind needs before Gemini sees it: a PDF must open without a password and have pages, an image
must carry its format's header, text must be UTF-8. It imports nothing from batches."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

PDF = "application/pdf"
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP",
               "image/heic": "HEIC", "image/heif": "HEIF"}
TEXT_BY_EXTENSION = {"md": "text/md", "markdown": "text/md", "html": "text/html",
                     "htm": "text/html", "csv": "text/csv"}
# What a name's extension promises; a file whose bytes disagree is refused.
PROMISED = {"pdf": PDF, "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
            "webp": "image/webp", "heic": "image/heic", "heif": "image/heif"}
_HEIF_BRANDS = {b"heic": "image/heic", b"heix": "image/heic", b"hevc": "image/heic",
                b"hevx": "image/heic", b"heim": "image/heic", b"heis": "image/heic",
                b"mif1": "image/heif", b"msf1": "image/heif", b"heif": "image/heif"}
_UNSUPPORTED = [
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a Linux program"),
    (b"\xcf\xfa\xed\xfe", "a macOS program"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office document"),
]
ZIP_MAGIC = b"PK\x03\x04"
ACCEPTED = "PDF, PNG, JPEG, WEBP, HEIC, plain text, Markdown, HTML or CSV"


class DocumentError(Exception):
    """A file that cannot be used; str(err) names the file and the problem."""

    def __init__(self, message: str, *, filename: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename


@dataclass(frozen=True)
class Kind:
    mime_type: str
    pages: int | None = None


def extension(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[1].lower() if "." in base else ""


def is_zip(data: bytes) -> bool:
    return data.startswith(ZIP_MAGIC)


def identify(name: str, data: bytes) -> Kind:
    """The file's type from its bytes, checked; DocumentError naming `name` otherwise."""
    if not data:
        raise DocumentError(f"{name} is empty (0 bytes).", filename=name)
    kind = _by_magic(name, data)
    promised = PROMISED.get(extension(name))
    if promised and promised != kind.mime_type:
        wanted = "a PDF" if promised == PDF else f"a {IMAGE_TYPES[promised]} image"
        got = _describe(kind.mime_type)
        if promised in IMAGE_TYPES and kind.mime_type not in IMAGE_TYPES:
            problem = "is not an image"
        else:
            problem = f"is not {wanted}"
        raise DocumentError(f"{name} is named like {wanted} but its content {problem} "
                            f"(it is {got}).", filename=name)
    return kind


def _by_magic(name: str, data: bytes) -> Kind:
    if data.startswith(b"%PDF-"):
        return Kind(PDF, _pdf_pages(name, data))
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if data[12:16] != b"IHDR" or data[16:24] in (b"", b"\x00" * 8) or len(data) < 33:
            raise DocumentError(f"{name} is not a valid PNG image (its header is damaged).",
                                filename=name)
        return Kind("image/png")
    if data.startswith(b"\xff\xd8\xff"):
        if len(data) < 128 or b"\xff\xd9" not in data[-1024:]:
            raise DocumentError(f"{name} is not a valid JPEG image (it is cut short).",
                                filename=name)
        return Kind("image/jpeg")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Kind("image/webp")
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return Kind(_HEIF_BRANDS[data[8:12]])
    if is_zip(data):
        raise DocumentError(f"{name} is a ZIP archive inside another upload or a ZIP-based "
                            "document (such as .docx or .xlsx), which is not supported.",
                            filename=name)
    for magic, what in _UNSUPPORTED:
        if data.startswith(magic):
            raise DocumentError(f"{name} is {what}, which is not supported. Accepted: "
                                f"{ACCEPTED}.", filename=name)
    return Kind(_text_type(name, data))


def _text_type(name: str, data: bytes) -> str:
    head = data[:4096]
    if b"\x00" in head:
        raise DocumentError(f"{name} is a binary file of an unsupported type. Accepted: "
                            f"{ACCEPTED}.", filename=name)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DocumentError(f"{name} is not UTF-8 text (bad byte at offset {err.start}); "
                            f"accepted: {ACCEPTED}.", filename=name) from None
    by_name = TEXT_BY_EXTENSION.get(extension(name))
    if by_name:
        return by_name
    start = text.lstrip()[:15].lower()
    if start.startswith(("<!doctype html", "<html")):
        return "text/html"
    return "text/plain"


def _pdf_pages(name: str, data: bytes) -> int:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    # pypdf logs every repair it makes to a damaged file; the error below says what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise DocumentError(f"{name} is an encrypted (password-protected) PDF; remove the "
                                "password and upload it again.", filename=name)
        pages = len(reader.pages)
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            RecursionError, OSError) as err:
        raise DocumentError(f"{name} is a damaged PDF that cannot be read ({err}).",
                            filename=name) from None
    if pages == 0:
        raise DocumentError(f"{name} is a PDF with 0 pages.", filename=name)
    return pages


def _describe(mime_type: str) -> str:
    if mime_type == PDF:
        return "a PDF"
    if mime_type in IMAGE_TYPES:
        return f"a {IMAGE_TYPES[mime_type]} image"
    return "text"
