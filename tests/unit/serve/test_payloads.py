import base64
import json

import pytest

from dogbreed.serve.payloads import DEFAULT_TOP_K, MAX_IMAGES, RequestError, parse


def records(mimetype, body, query=None, attrs=None, n=10):
    return parse(mimetype, body, query=query or {}, custom_attributes=attrs, num_classes=n)


def call(mimetype, body, query=None, attrs=None, n=10):
    """The one record of a JSON or raw request."""
    (record,) = records(mimetype, body, query, attrs, n)
    return record


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_raw_bodies():
    raw = ("image/jpeg", "image/png", "image/webp", "application/x-image", "application/octet-stream")
    for mimetype in raw:
        inv = call(mimetype, b"bytes")
        assert inv.images == [b"bytes"] and inv.top_k == DEFAULT_TOP_K


def test_json_shapes():
    assert call("application/json", json.dumps({"image": b64(b"a")}).encode()).images == [b"a"]
    inv = call("application/json", json.dumps({"images": [b64(b"a"), "data:image/png;base64," + b64(b"b")],
                                               "top_k": 2}).encode())
    assert inv.images == [b"a", b"b"] and inv.top_k == 2


def test_top_k_sources_and_precedence():
    body = json.dumps({"image": b64(b"a"), "top_k": 2}).encode()
    assert call("application/json", body, query={"top_k": "4"}, attrs="top_k=3").top_k == 2
    assert call("image/jpeg", b"x", query={"top_k": "4"}, attrs="a=1; top_k=3").top_k == 3
    assert call("image/jpeg", b"x", query={"top_k": "4"}).top_k == 4
    assert call("image/jpeg", b"x", n=3).top_k == 3  # the default is capped by the classes
    assert call("image/jpeg", b"x", query={"top_k": "50"}, n=3).top_k == 3  # so is a request


@pytest.mark.parametrize("mimetype,body,query,status,fragment", [
    ("", b"x", {}, 415, "no Content-Type"),
    ("text/plain", b"x", {}, 415, "unsupported Content-Type 'text/plain'"),
    ("image/jpeg", b"", {}, 400, "empty request body"),
    ("image/jpeg", b"x", {"top_k": "0"}, 400, "query string top_k must be at least 1, got 0"),
    ("image/jpeg", b"x", {"top_k": "-3"}, 400, "at least 1"),
    ("image/jpeg", b"x", {"top_k": "2.5"}, 400, "must be a whole number"),
    ("application/json", b"[1]", {}, 400, "must be an object"),
    ("application/json", b'{"image": "a", "images": ["b"]}', {}, 400, "must be an object"),
    ("application/json", b'{"images": "abc"}', {}, 400, "non-empty list"),
    ("application/json", b'{"image": ""}', {}, 400, "image 0: empty"),
    ("application/json", b'{"image": "YQ==", "top_k": true}', {}, 400, "must be a whole number"),
    ("application/json", b'{"image": "YQ==", "top_k": 1.5}', {}, 400, "must be a whole number"),
    ("application/json", b"\xff\xfe", {}, 400, "invalid JSON"),
    ("application/json", b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, {}, 400, "nested too deeply"),
])
def test_errors(mimetype, body, query, status, fragment):
    with pytest.raises(RequestError) as err:
        call(mimetype, body, query=query)
    assert err.value.status == status and fragment in err.value.message


def test_batch_limit():
    body = json.dumps({"images": [b64(b"a")] * (MAX_IMAGES + 1)}).encode()
    with pytest.raises(RequestError) as err:
        call("application/json", body)
    assert err.value.status == 413


def test_json_lines_are_one_record_per_line_in_order():
    lines = [{"image": b64(b"a")}, {"images": [b64(b"b"), b64(b"c")], "top_k": 2}, {"image": b64(b"d")}]
    body = ("\n".join(json.dumps(line) for line in lines) + "\n\n").encode()  # blank lines skipped
    got = records("application/jsonlines", body, attrs="top_k=3")
    assert [r.images for r in got] == [[b"a"], [b"b", b"c"], [b"d"]]
    assert [r.top_k for r in got] == [3, 2, 3]  # a line's own top_k first, then the header's


@pytest.mark.parametrize("body,status,fragment", [
    (b"\n\n", 400, "empty request body"),
    (b'{"image": "YQ=="}\n{oops\n', 400, "line 2: invalid JSON"),
    (b'{"image": "YQ=="}\n[1]\n', 400, "line 2: JSON body must be an object"),
    (b'{"images": [' + b",".join([b'"YQ=="'] * (MAX_IMAGES + 1)) + b"]}\n", 413, "line 1: 65 images"),
])
def test_json_lines_errors_name_the_line(body, status, fragment):
    with pytest.raises(RequestError) as err:
        records("application/jsonlines", body)
    assert err.value.status == status and fragment in err.value.message
