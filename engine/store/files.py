"""Files uploaded for a case's materials: type and size limits, content-addressed storage."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath

from engine.errors import EngineError

MAX_BYTES = 10 * 1024 * 1024

# Allowed extension -> (content type, how the file must begin).
ALLOWED: dict[str, tuple[str, tuple[bytes, ...]]] = {
    "pdf": ("application/pdf", (b"%PDF-",)),
    "jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             (b"PK\x03\x04",)),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
             (b"PK\x03\x04",)),
}


class AttachmentRefused(EngineError):
    """An uploaded file is empty, too large, or not of an allowed type."""

    title = "File refused"
    status = 422


@dataclass(frozen=True)
class AttachmentView:
    """An attachment as task and case pages list it."""

    id: int
    case_id: int
    task_id: str | None
    material: str | None
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime


def check_upload(filename: str, content: bytes) -> tuple[str, str]:
    """Return (safe file name, content type), or raise AttachmentRefused."""
    name = PurePath(filename.replace("\\", "/")).name.strip()
    if not name:
        raise AttachmentRefused("the file has no name")
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension not in ALLOWED:
        raise AttachmentRefused("only PDF, JPG, PNG, DOCX and XLSX files may be attached",
                                filename=name)
    if not content:
        raise AttachmentRefused("the file is empty", filename=name)
    if len(content) > MAX_BYTES:
        raise AttachmentRefused("the file is larger than 10 MB", filename=name)
    content_type, signatures = ALLOWED[extension]
    if not content.startswith(signatures):
        raise AttachmentRefused("the file's content does not match its type", filename=name)
    return name[-255:], content_type


class FileStore:
    """Attachment contents under `<instance>/attachments`, named by their SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """Where the content with that hash is kept."""
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256

    def put(self, content: bytes) -> str:
        """Store the content (once) and return its SHA-256."""
        digest = hashlib.sha256(content).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return digest
