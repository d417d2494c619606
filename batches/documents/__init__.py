"""Documents as rows: uploaded PDFs, images and text files checked by their bytes, kept in
Django's storage, and attached to each row's request (inline, or through the Files API).

Modules, lowest first: kinds (type by magic bytes, per-type checks), unpack (uploads and ZIPs
-> files, with the limits and ZIP safety rules), store (staging in default_storage, cleanup on
failure and on delete), intake (what a creation sends -> rows and their documents), parts (a
row's documents -> request attachments; used by the engine). It may import models, prompts,
ingest and providers; never engine, services or anything above them.
"""

from batches.documents.intake import DUPLICATE_CHOICES, Intake, gather
from batches.documents.kinds import ACCEPTED, DocumentError, identify
from batches.documents.store import DOCUMENT_COLUMNS, Staging, delete_quietly, read_bytes
from batches.documents.unpack import Limits

__all__ = ["ACCEPTED", "DOCUMENT_COLUMNS", "DUPLICATE_CHOICES", "DocumentError", "Intake",
           "Limits", "Staging", "delete_quietly", "gather", "identify", "read_bytes"]
