"""serve's request bodies: bounded in bytes, through the real app (Flask's test client)."""

from __future__ import annotations

import base64
import io
import json

from PIL import Image

from dogbreed.contract.environment import ServingEnvironment
from dogbreed.serve import payloads
from dogbreed.serve.app import ModelState, create_app


def test_a_json_lines_line_is_bounded_like_a_whole_json_body(trained_model):
    photo = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 80, 40)).save(photo, "JPEG")
    state = ModelState(trained_model)
    state.load()
    client = create_app(state, settings=ServingEnvironment(max_payload_mb=1024)).test_client()
    good = (json.dumps({"image": base64.b64encode(photo.getvalue()).decode()}) + "\n").encode()
    endless = b'{"image": "' + b"A" * payloads.WHOLE_BODY_BYTES  # no end of line in sight
    answer = client.post("/invocations", data=good + endless, content_type=payloads.JSONLINES_TYPE)
    assert answer.status_code == 413, answer.json
    assert answer.json["error"].startswith(f"line 2: over {payloads.WHOLE_BODY_BYTES:,} bytes")
    assert client.post("/invocations", data=good * 2,
                       content_type=payloads.JSONLINES_TYPE).status_code == 200


def test_lines_are_read_in_blocks_with_the_same_bounds():
    """werkzeug's LimitedStream reads a line one byte a call: line_reader puts a buffer in front,
    and a line is cut where the size says, as before; other streams pass through."""
    from werkzeug.wsgi import LimitedStream

    from dogbreed.serve.body import line_reader

    data = b"first\n" + b"x" * 100_000 + b"\nlast"
    plain = LimitedStream(io.BytesIO(data), len(data))
    buffered = line_reader(LimitedStream(io.BytesIO(data), len(data)))
    assert isinstance(buffered, io.BufferedReader)
    for size in (6, 50_000, 50_001, 200_000):
        assert buffered.readline(size) == plain.readline(size), size
    other = io.BytesIO(data)
    assert line_reader(other) is other
