"""What /invocations accepts, and every way a request can be wrong (4xx, never 5xx).

Raw image bodies (``image/*``, ``application/x-image``, ``application/octet-stream``):
the whole body is one image, in any format Pillow reads; its content decides,
not the Content-Type. JSON bodies (``application/json``)::

    {"images": ["<base64>", ...], "top_k": 3}      or      {"image": "<base64>"}

(``data:image/...;base64,`` prefixes are accepted). JSON Lines bodies
(``application/jsonlines``, what batch transform sends with SplitType Line and BatchStrategy
MultiRecord): one such JSON object per line, each a record answered on its own. ``top_k``
(default 5, at most the number of classes) can also come from SageMaker's CustomAttributes header
(``top_k=3``) or, for curl, the query string (``?top_k=3``).

The body limit is SageMaker's real-time 6 MB, or ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` when batch
transform (or ``dogctl deploy --async``, up to 1 GB) sets it. A JSON Lines body is read and parsed
a line at a time (:func:`json_lines`), so one of any size never sits whole in memory; a photo or a
JSON body, read whole, stays under :data:`WHOLE_BODY_BYTES` (100 MB) whatever the limit.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dogbreed.contract.environment import DEFAULT_PAYLOAD_MB

MAX_BODY_BYTES = DEFAULT_PAYLOAD_MB * 1024 * 1024  # SageMaker's real-time payload limit
# A photo or a JSON body is read whole: past this (only reachable with SAGEMAKER_MAX_PAYLOAD_IN_MB,
# e.g. an asynchronous endpoint's 1 GB) only JSON Lines, read a line at a time, is taken.
WHOLE_BODY_BYTES = 100 * 1024 * 1024
MAX_IMAGES = 64  # per request, or per JSON Lines record
DEFAULT_TOP_K = 5
RAW_TYPES = ("application/x-image", "application/octet-stream")
JSON_TYPE = "application/json"
JSONLINES_TYPE = "application/jsonlines"
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
ACCEPTED = "image/jpeg, image/png (any image/*), application/x-image, application/json, application/jsonlines"
# What a model package declares it takes (SupportedContentTypes): the usual of the above.
CONTENT_TYPES = ("image/jpeg", "image/png", *RAW_TYPES, JSON_TYPE, JSONLINES_TYPE)


class RequestError(Exception):
    """A request the client must change (never the server's fault): answered with ``status``, a 4xx."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Invocation:
    images: list[bytes]
    top_k: int
    line: int | None = None  # its line in a JSON Lines body (for error messages)


def is_raw(mimetype: str) -> bool:
    return mimetype.startswith("image/") or mimetype in RAW_TYPES


def _top_k(value: Any, source: str, num_classes: int) -> int:
    if isinstance(value, bool):
        value = None
    try:
        k = int(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity (or 1e400)
        raise RequestError(400, f"{source} top_k must be a whole number, at least 1, got {value!r}") from None
    if k < 1:
        raise RequestError(400, f"{source} top_k must be at least 1, got {k}")
    return min(k, num_classes)  # "the best k" of fewer classes: all of them


def _attribute_top_k(custom_attributes: str | None) -> str | None:
    for part in (custom_attributes or "").replace(";", ",").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip().lower() == "top_k":
            return value.strip()
    return None


def _b64(item: Any, index: int) -> bytes:
    if not isinstance(item, str):
        raise RequestError(400, f"image {index}: expected a base64 string, got {type(item).__name__}")
    if item.startswith("data:"):
        item = item.partition(",")[2]
    try:
        data = base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"image {index}: not valid base64") from None
    if not data:
        raise RequestError(400, f"image {index}: empty")
    return data


def _from_json(body: bytes) -> tuple[list[bytes], Any]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"invalid JSON: {exc}") from None
    except ValueError:  # Python's int() refuses a number of over 4300 digits
        raise RequestError(400, "invalid JSON: a number too long (over 4300 digits)") from None
    except RecursionError:  # e.g. [[[[...]]]]: the decoder's depth limit
        raise RequestError(400, "invalid JSON: nested too deeply") from None
    if not isinstance(doc, dict) or ("images" in doc) == ("image" in doc):
        raise RequestError(400, 'JSON body must be an object with "images": [base64, ...] '
                               'or "image": base64 (and optionally "top_k")')
    items = doc["images"] if "images" in doc else [doc["image"]]
    if not isinstance(items, list) or not items:
        raise RequestError(400, '"images" must be a non-empty list of base64 strings')
    if len(items) > MAX_IMAGES:
        raise RequestError(413, f"{len(items)} images in one request; at most {MAX_IMAGES}")
    return [_b64(item, i) for i, item in enumerate(items)], doc.get("top_k")


def parse(mimetype: str, body: bytes, *, query: Mapping[str, str], custom_attributes: str | None,
          num_classes: int) -> list[Invocation]:
    """Turn a request into its records (one, or one per JSON Lines line): images and top_k each;
    or raise :class:`RequestError`."""
    if not mimetype:
        raise RequestError(415, f"no Content-Type: send one of {ACCEPTED}")
    if mimetype not in (JSON_TYPE, JSONLINES_TYPE) and not is_raw(mimetype):
        raise RequestError(415, f"unsupported Content-Type {mimetype!r}: send one of {ACCEPTED}")
    if mimetype == JSONLINES_TYPE:
        return list(json_lines(body.splitlines(), query=query, custom_attributes=custom_attributes,
                               num_classes=num_classes))
    if not body:
        raise RequestError(400, "empty request body: send a photo")
    fallback = _fallback_top_k(query, custom_attributes)
    if mimetype == JSON_TYPE:
        return [_record(*_from_json(body), fallback, num_classes)]
    return [_record([body], None, fallback, num_classes)]


def json_lines(lines: Iterable[bytes], *, query: Mapping[str, str], custom_attributes: str | None,
               num_classes: int) -> Iterator[Invocation]:
    """The records of a JSON Lines body, one per non-blank line, parsed as they are read (so a
    body of any size is never whole in memory); :class:`RequestError` names the line."""
    fallback = _fallback_top_k(query, custom_attributes)
    seen = False
    for number, line in enumerate(lines, 1):
        if line.strip():
            seen = True
            try:
                record = _record(*_from_json(line), fallback, num_classes)
            except RequestError as exc:
                raise RequestError(exc.status, f"line {number}: {exc.message}") from None
            record.line = number
            yield record
    if not seen:
        raise RequestError(400, "empty request body: send a photo")


def _fallback_top_k(query: Mapping[str, str], custom_attributes: str | None) -> tuple[Any, str] | None:
    """top_k from the CustomAttributes header, else the query string: (value, where), or None."""
    if (header := _attribute_top_k(custom_attributes)) is not None:
        return header, CUSTOM_ATTRIBUTES
    if "top_k" in query:
        return query["top_k"], "query string"
    return None


def _record(images: list[bytes], top_k: Any, fallback: tuple[Any, str] | None,
            num_classes: int) -> Invocation:
    value, source = (top_k, "JSON") if top_k is not None else (fallback or (None, ""))
    k = DEFAULT_TOP_K if value is None else _top_k(value, source, num_classes)
    return Invocation(images, min(k, num_classes))
