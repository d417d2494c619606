"""The fake's Files API and document parts, shaped after Google's REST API:

- `POST /upload/v1beta/files` with `X-Goog-Upload-Protocol: resumable` and
  `X-Goog-Upload-Command: start` opens an upload and answers with `X-Goog-Upload-URL`;
- `POST <that URL>` with `X-Goog-Upload-Command: upload[, finalize]` and
  `X-Goog-Upload-Offset` sends the bytes; finalize answers `X-Goog-Upload-Status: final` and
  `{"file": File}`;
- `GET /v1beta/files/{id}` answers the File (404 when unknown or expired).

`inline_data` / `file_data` parts of generateContent resolve to bytes here; the answer then
describes each document by a digest (and its page count for PDFs), so a test can tell which
document a row was answered about. It imports nothing from batches but knobs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from batches.fake_gemini.knobs import Knobs


class PartError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Upload:
    display_name: str
    mime_type: str
    size: int
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _File:
    id: str
    display_name: str
    mime_type: str
    data: bytes
    created: float
    expires: float

    def resource(self, base: str) -> dict[str, Any]:
        return {
            "name": f"files/{self.id}",
            "displayName": self.display_name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.data)),
            "createTime": _rfc3339(self.created),
            "updateTime": _rfc3339(self.created),
            "expirationTime": _rfc3339(self.expires),
            "sha256Hash": base64.b64encode(hashlib.sha256(self.data).hexdigest().encode()
                                           ).decode(),
            "uri": f"{base}/v1beta/files/{self.id}",
            "state": "ACTIVE",
            "source": "UPLOADED",
        }


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class FakeFiles:
    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self._lock = threading.Lock()
        self._uploads: dict[str, _Upload] = {}
        self._files: dict[str, _File] = {}
        self._failed_once: set[str] = set()
        self.uploads_started = 0
        self.uploads_finished = 0
        self.uploads_failed = 0
        self.parts_inline = 0
        self.parts_file = 0

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"uploads_started": self.uploads_started,
                    "uploads_finished": self.uploads_finished,
                    "uploads_failed": self.uploads_failed, "files": len(self._files),
                    "parts_inline": self.parts_inline, "parts_file": self.parts_file}

    def start(self, headers: dict[str, str], body: dict, base: str) -> tuple[int, dict, dict]:
        if headers.get("x-goog-upload-command", "").strip() != "start":
            return 400, {}, _error(400, "Expected X-Goog-Upload-Command: start")
        meta = body.get("file") or {} if isinstance(body, dict) else {}
        name = str(meta.get("displayName") or meta.get("display_name") or "")
        mime = headers.get("x-goog-upload-header-content-type") or meta.get("mimeType") or ""
        try:
            size = int(headers.get("x-goog-upload-header-content-length") or -1)
        except ValueError:
            size = -1
        with self._lock:
            self.uploads_started += 1
            if any(m in name for m in self.knobs.fail_upload_once) and name not in \
                    self._failed_once:
                self._failed_once.add(name)
                self.uploads_failed += 1
                return 503, {}, _error(503, "The service is currently unavailable.")
            upload_id = uuid.uuid4().hex
            self._uploads[upload_id] = _Upload(name, mime, size)
        url = f"{base}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
        return 200, {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"}, {}

    def chunk(self, upload_id: str, headers: dict[str, str], data: bytes,
              base: str) -> tuple[int, dict, dict]:
        command = {c.strip() for c in headers.get("x-goog-upload-command", "").split(",")}
        final = {"X-Goog-Upload-Status": "final"}
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None:
                return 404, final, _error(404, "No such upload session.")
            if int(headers.get("x-goog-upload-offset") or 0) != len(upload.data):
                return 400, final, _error(400, "Upload offset does not match.")
            upload.data += data
            if "finalize" not in command:
                return 200, {"X-Goog-Upload-Status": "active"}, {}
            del self._uploads[upload_id]
            if upload.size >= 0 and upload.size != len(upload.data):
                return 400, final, _error(400, "Upload size does not match the declared size.")
            now = time.time()
            file = _File(uuid.uuid4().hex[:12], upload.display_name, upload.mime_type,
                         bytes(upload.data), now, now + self.knobs.file_ttl_s)
            self._files[file.id] = file
            self.uploads_finished += 1
        return 200, final, {"file": file.resource(base)}

    def add(self, display_name: str, mime_type: str, data: bytes) -> str:
        """Store a file the server made itself (a batch job's results); returns its id."""
        now = time.time()
        file = _File(uuid.uuid4().hex[:12], display_name, mime_type, data, now,
                     now + self.knobs.file_ttl_s)
        with self._lock:
            self._files[file.id] = file
        return file.id

    def content(self, file_id: str) -> bytes | None:
        """A live file's bytes (a batch job's input, a download), or None."""
        file = self._live(file_id)
        return None if file is None else file.data

    def download(self, file_id: str) -> tuple[int, dict, dict | bytes]:
        data = self.content(file_id)
        if data is None:
            return 404, {}, _error(404, f"File {file_id} not found.")
        return 200, {"Content-Type": "application/octet-stream"}, data

    def expire_all(self) -> None:
        """As if every uploaded file had passed its expiration time (for tests)."""
        with self._lock:
            self._files.clear()

    def get(self, file_id: str, base: str) -> tuple[int, dict, dict]:
        file = self._live(file_id)
        if file is None:
            return 403, {}, _error(403, f"You do not have permission to access the File "
                                        f"{file_id} or it may not exist.")
        return 200, {}, file.resource(base)

    def _live(self, file_id: str) -> _File | None:
        with self._lock:
            file = self._files.get(file_id)
            if file is not None and file.expires <= time.time():
                del self._files[file_id]
                file = None
            return file

    def documents(self, content: Any) -> list[tuple[str, bytes]]:
        """(mime type, bytes) of each inline_data / file_data part of one Content dict."""
        found = []
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts or []:
            if not isinstance(part, dict):
                continue
            inline = part.get("inlineData") or part.get("inline_data")
            ref = part.get("fileData") or part.get("file_data")
            if inline:
                raw = str(inline.get("data") or "")
                try:
                    data = base64.b64decode(raw.replace("-", "+").replace("_", "/")
                                            + "=" * (-len(raw) % 4), validate=True)
                except ValueError:
                    raise PartError(400, "inline_data.data is not base64") from None
                with self._lock:
                    self.parts_inline += 1
                found.append((str(inline.get("mimeType") or inline.get("mime_type")), data))
            elif ref:
                uri = str(ref.get("fileUri") or ref.get("file_uri") or "")
                file = self._live(uri.rsplit("/files/", 1)[-1])
                if file is None:
                    raise PartError(403, f"You do not have permission to access the File "
                                         f"{uri} or it may not exist.")
                with self._lock:
                    self.parts_file += 1
                found.append((file.mime_type, file.data))
        return found


def describe(mime_type: str, data: bytes) -> str:
    """What the fake 'read' in a document: its digest, size and (PDF) page count."""
    text = f"[{mime_type} sha256:{hashlib.sha256(data).hexdigest()[:16]} {len(data)} bytes"
    if mime_type == "application/pdf":
        text += f" {_pdf_pages(data)} pages"
    return text + "]"


def _pdf_pages(data: bytes) -> str:
    try:
        from pypdf import PdfReader

        return str(len(PdfReader(io.BytesIO(data)).pages))
    except Exception:  # the fake describes what it got, even a broken file
        return "?"


def _error(status: int, message: str) -> dict:
    names = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
             503: "UNAVAILABLE"}
    return {"error": {"code": status, "message": message, "status": names.get(status, "")}}
