"""Uploaded files -> (name, bytes) one at a time, ZIPs unpacked under the safety rules, and the
count and size limits applied before a byte is kept. It imports nothing from batches but kinds.

ZIP rules: no entry may leave the archive's root (absolute paths, drive letters, `..`), no
symlinks, no encrypted entries, no ZIP inside a ZIP, no more entries than the file limit, and
no entry larger than the size limit, whatever its header claims (it is read with a cap).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from batches.documents.kinds import DocumentError, extension, is_zip

MB = 1024 * 1024
_SKIPPED_DIRS = ("__MACOSX/",)


@dataclass(frozen=True)
class Limits:
    max_files: int
    max_file_bytes: int
    max_total_bytes: int

    @classmethod
    def from_settings(cls) -> Limits:
        from django.conf import settings

        return cls(max_files=settings.BATCH_MAX_FILES,
                   max_file_bytes=settings.BATCH_MAX_FILE_MB * MB,
                   max_total_bytes=settings.BATCH_MAX_FILES_TOTAL_MB * MB)


def human_mb(n: int) -> str:
    if n < MB:
        return f"{max(1, round(n / 1024)):,} KB"
    return f"{n / MB:.1f}".removesuffix(".0") + " MB"


def clean_name(name: str) -> str:
    """The name a browser or a CLI sent, without client-side folders."""
    return (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip() or "unnamed"


def files_in(uploads: list[tuple[str, IO[bytes]]], limits: Limits, already: int = 0,
             already_bytes: int = 0) -> Iterator[tuple[str, bytes]]:
    """Yield (name, bytes) for every file, with every ZIP upload's entries in its place.

    `already`, `already_bytes`: the files the batch holds before these (the limits cover the
    whole batch)."""
    count, total = already, already_bytes
    for name, file in uploads:
        name = clean_name(name)
        size = getattr(file, "size", None)
        if isinstance(size, int) and size > max(limits.max_file_bytes, limits.max_total_bytes):
            raise _too_big(name, size, limits.max_file_bytes)
        data = _read_capped(file, max(limits.max_file_bytes, limits.max_total_bytes), name)
        if isinstance(size, int) and size > len(data):
            # The web's upload handler dropped the bytes past BATCH_MAX_UPLOAD_MB.
            raise DocumentError(f"{name} is {human_mb(size)}, more than one upload may be.",
                                filename=name)
        if is_zip(data) and extension(name) not in ("docx", "xlsx", "pptx", "odt"):
            for inner, content in _entries(name, data, limits, count):
                count, total = _count(count, total, inner, len(content), limits)
                yield inner, content
            continue
        if len(data) > limits.max_file_bytes:
            raise _too_big(name, len(data), limits.max_file_bytes)
        count, total = _count(count, total, name, len(data), limits)
        yield name, data


def _count(count: int, total: int, name: str, size: int, limits: Limits) -> tuple[int, int]:
    count += 1
    total += size
    if count > limits.max_files:
        raise DocumentError(f"Too many files: {name} is file number {count}; a batch holds at "
                            f"most {limits.max_files}.", filename=name)
    if total > limits.max_total_bytes:
        raise DocumentError(f"The batch's files add up to more than "
                            f"{human_mb(limits.max_total_bytes)} (the limit) at {name}.",
                            filename=name)
    return count, total


def _too_big(name: str, size: int, limit: int) -> DocumentError:
    return DocumentError(f"{name} is {human_mb(size)}; the limit is {human_mb(limit)} per file.",
                         filename=name)


def _read_capped(file: IO[bytes], cap: int, name: str) -> bytes:
    try:
        if file.seekable():
            file.seek(0)
    except (AttributeError, OSError, ValueError):
        pass
    data = file.read(cap + 1)
    if len(data) > cap:
        raise _too_big(name, len(data), cap)
    return bytes(data)


def _entries(archive: str, data: bytes, limits: Limits,
             already: int) -> Iterator[tuple[str, bytes]]:
    import io

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as err:
        raise DocumentError(f"{archive} is a damaged ZIP archive ({err}).",
                            filename=archive) from None
    wanted = [i for i in infos if not i.is_dir() and not _skipped(i.filename)]
    for info in wanted:
        _check_entry(archive, info, limits)
    if already + len(wanted) > limits.max_files:
        raise DocumentError(f"{archive} holds {len(wanted)} files; a batch holds at most "
                            f"{limits.max_files}" + (f" and already has {already}" if already
                                                     else "") + ".", filename=archive)
    if not wanted:
        raise DocumentError(f"{archive} holds no files.", filename=archive)
    for info in wanted:
        where = f"{archive}: {info.filename}"
        try:
            with zf.open(info) as entry:
                content = entry.read(limits.max_file_bytes + 1)
        except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError) as err:
            raise DocumentError(f"{where} cannot be read from the archive ({err}).",
                                filename=info.filename) from None
        if len(content) > limits.max_file_bytes:
            raise _too_big(where, len(content), limits.max_file_bytes)
        if is_zip(content):
            raise DocumentError(f"{where} is a ZIP inside the ZIP; nested archives are not "
                                "unpacked.", filename=info.filename)
        yield info.filename, content


def _skipped(path: str) -> bool:
    base = path.rstrip("/").rsplit("/", 1)[-1]
    return path.startswith(_SKIPPED_DIRS) or base.startswith(".")


def _check_entry(archive: str, info: zipfile.ZipInfo, limits: Limits) -> None:
    path = info.filename
    where = f"{archive}: {path}"
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":") or ".." in parts:
        raise DocumentError(f"{where} points outside the archive's folder; the ZIP is refused.",
                            filename=path)
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise DocumentError(f"{where} is a symbolic link; the ZIP is refused.", filename=path)
    if info.flag_bits & 0x1:
        raise DocumentError(f"{where} is encrypted; upload the ZIP without a password.",
                            filename=path)
    if extension(path) == "zip":
        raise DocumentError(f"{where} is a ZIP inside the ZIP; nested archives are not "
                            "unpacked.", filename=path)
    if info.file_size > limits.max_file_bytes:
        raise _too_big(where, info.file_size, limits.max_file_bytes)
