"""dogctl's evaluate: what it sends (a recording transport in place of an endpoint)."""

from __future__ import annotations

import json
import os

from orchestration.invocation import evaluate


def test_every_batch_fits_a_serverless_endpoint(tmp_path):
    for breed in ("001.Affenpinscher", "002.Afghan_hound"):
        (tmp_path / breed).mkdir()
        for i in range(8):
            (tmp_path / breed / f"{i}.jpg").write_bytes(os.urandom(700 * 1024))  # big photos
    sizes: list[int] = []

    def send(body: bytes, content_type: str) -> dict:
        sizes.append(len(body))
        images = json.loads(body)["images"]
        return {"predictions": [[{"class": "001.Affenpinscher"}] for _ in images]}

    result = evaluate(send, tmp_path)
    assert result.images == 16 and result.correct == 8
    assert len(sizes) > 1 and max(sizes) < 4 * 1024 * 1024  # serverless endpoints take 4 MB at most
