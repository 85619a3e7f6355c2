"""Reading an upload from a request: multipart `file`/`files`, or a raw image/* body.

A body is counted while it streams in, so one over its limit is refused (413) as soon as it
passes the limit, with or without a Content-Length. Images are spooled (in memory up to 1 MiB,
on disk beyond), as Starlette does with multipart files, and read into memory only when their
check starts (api/admission/submitter.py): memory does not grow with the uploads in flight.
"""

from __future__ import annotations

import re
from tempfile import SpooledTemporaryFile

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.types import Message

from api.admission.submitter import Upload
from shared.constants import MAX_TOP_K
from shared.errors import BadRequest, RequestTooLarge, UnsupportedImageType
from shared.models import ModelRef
from shared.sessions import SESSION_ID_PATTERN

# Multipart framing and form fields on top of the image itself.
_MULTIPART_OVERHEAD_BYTES = 64 * 1024
# A form field that is not a file (top_k) is held in memory; Starlette's default is 1 MiB each.
_MAX_FIELD_BYTES = 1024
_TOP_K = re.compile(r"[0-9]{1,3}")
# A session's id, as POST /v1/sessions makes them (a UUID) or any other store key part.
SESSION_ID = re.compile(SESSION_ID_PATTERN)
_SPOOL_MEMORY_BYTES = 1024 * 1024


def _limited(request: Request, limit_bytes: int) -> Request:
    """The same request, whose body raises RequestTooLarge once more than `limit_bytes` came in."""
    try:
        declared = int(request.headers.get("content-length", ""))
    except ValueError:
        declared = 0
    if declared > limit_bytes:
        raise RequestTooLarge(f"the request is {declared:,} bytes; the limit is {limit_bytes:,} bytes")
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit_bytes:
            raise RequestTooLarge(f"the request is over the limit of {limit_bytes:,} bytes")
        return message

    return Request(request.scope, receive)


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def read_form(request: Request, *, max_files: int, max_bytes: int) -> FormData:
    """The form, its files spooled (to disk past 1 MiB each), the whole body at most `max_bytes`
    of files plus framing."""
    limited = _limited(request, max_bytes + _MULTIPART_OVERHEAD_BYTES)
    try:
        return await limited.form(max_files=max_files, max_fields=32, max_part_size=_MAX_FIELD_BYTES)
    except RequestTooLarge:
        raise
    except Exception as e:  # malformed multipart framing, too many parts
        raise BadRequest(f"the multipart body cannot be read: {e}") from e


def _json_safe(text: str | None) -> str | None:
    """A client's file name, fit for a JSON answer: a multipart `charset` such as
    raw_unicode_escape can decode it to lone surrogates, which UTF-8 cannot encode."""
    return None if text is None else text.encode("utf-8", "replace").decode("utf-8")


async def to_upload(item: object, field: str) -> Upload:
    if not isinstance(item, UploadFile):
        raise BadRequest(f"the form field `{field}` must be a file")
    return Upload(item.file, item.content_type, _json_safe(item.filename))


async def _spool(request: Request) -> UploadFile:
    # No `with`: the file lives as long as the Upload, and goes (its disk file too) with the request.
    spooled = UploadFile(SpooledTemporaryFile(max_size=_SPOOL_MEMORY_BYTES))  # type: ignore[arg-type]  # noqa: SIM115
    async for chunk in request.stream():
        await spooled.write(chunk)  # past 1 MiB, in a thread: a disk write
    return spooled


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
    spooled = await _spool(_limited(request, max_bytes))
    return Upload(spooled.file, content_type), None


def form_top_k(form: FormData | None, default: int | None) -> int | None:
    """`top_k` may come as a form field too; the query string is the default."""
    if form is None or "top_k" not in form:
        return default
    raw = form["top_k"]
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
    if not isinstance(raw, str) or not _TOP_K.fullmatch(raw.strip()) or not 1 <= int(raw) <= MAX_TOP_K:
        raise BadRequest(f"top_k must be a whole number from 1 to {MAX_TOP_K}, not {raw!r}")
    return int(raw)


def form_model(form: FormData | None, default: str | None) -> str | None:
    """`model` may come as a form field too; the query string is the default."""
    if form is None or "model" not in form:
        return default
    raw = form["model"]
    if not isinstance(raw, str):
        raise BadRequest("the form field `model` must be text: a name or name@version")
    return str(ModelRef.parse(raw))


def form_callback_url(form: FormData | None, default: str | None) -> str | None:
    """`callback_url` may come as a form field too; the query string is the default."""
    return _form_text(form, "callback_url", default, "a URL")


def form_session_id(form: FormData | None, default: str | None) -> str | None:
    """`session_id` may come as a form field too; the query string is the default."""
    session_id = _form_text(form, "session_id", default, "a session id")
    if session_id is not None and not SESSION_ID.fullmatch(session_id):
        raise BadRequest("the form field `session_id` must be a session id, as POST /v1/sessions answered it")
    return session_id


def _form_text(form: FormData | None, field: str, default: str | None, what: str) -> str | None:
    if form is None or field not in form:
        return default
    raw = form[field]
    if not isinstance(raw, str) or not raw.strip():
        raise BadRequest(f"the form field `{field}` must be {what}")
    return raw.strip()
