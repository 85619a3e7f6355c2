"""Reading an upload from a request: multipart `file`/`files`, or a raw image/* body."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import FormData, UploadFile

from api.admission.submitter import Upload
from shared.constants import MAX_TOP_K
from shared.errors import BadRequest, ImageTooLarge, UnsupportedImageType

# Multipart framing and form fields on top of the image itself.
_MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _check_content_length(request: Request, limit: int) -> None:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ImageTooLarge(f"the request is {int(length):,} bytes; the limit is {limit:,} bytes")


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def read_form(request: Request, *, max_files: int, max_bytes: int) -> FormData:
    _check_content_length(request, max_bytes + _MULTIPART_OVERHEAD_BYTES)
    try:
        return await request.form(max_files=max_files, max_fields=32)
    except Exception as e:  # malformed multipart framing, too many parts
        raise BadRequest(f"the multipart body cannot be read: {e}") from e


async def to_upload(item: object, field: str) -> Upload:
    if not isinstance(item, UploadFile):
        raise BadRequest(f"the form field `{field}` must be a file")
    return Upload(await item.read(), item.content_type, item.filename)


async def read_single_upload(request: Request, max_bytes: int) -> tuple[Upload, FormData | None]:
    """The image of POST /v1/jobs, and the form (for a `top_k` field) when multipart."""
    if is_multipart(request):
        form = await read_form(request, max_files=1, max_bytes=max_bytes)
        if "file" not in form:
            raise BadRequest("the multipart body has no `file` field")
        return await to_upload(form["file"], "file"), form
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("image/"):
        raise UnsupportedImageType(
            f"Content-Type {content_type or '(none)'}: send multipart/form-data with a `file` "
            "field, or the raw image with Content-Type image/*"
        )
    _check_content_length(request, max_bytes)
    return Upload(await request.body(), content_type), None


def form_top_k(form: FormData | None, default: int) -> int:
    """`top_k` may come as a form field too; the query string is the default."""
    if form is None or "top_k" not in form:
        return default
    raw = form["top_k"]
    if not isinstance(raw, str) or not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_TOP_K:
        raise BadRequest(f"top_k must be a whole number from 1 to {MAX_TOP_K}, not {raw!r}")
    return int(raw)
