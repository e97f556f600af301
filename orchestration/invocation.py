"""Photos through an endpoint, whichever backend serves it: one photo's top breeds, or a whole
split's accuracy, per-breed results and confusions. Both backends give a :data:`Send`."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dogbreed.contract.artifact import display_name
from dogbreed.errors import UserError
from dogbreed.serve.payloads import JSON_TYPE, MAX_BODY_BYTES, MAX_IMAGES

# A JSON batch stays under the smallest body SageMaker takes (serverless endpoints: 4 MB; real-time
# 6 MB, the server's own limit): base64 grows bytes by 4/3, plus some slack.
SERVERLESS_BODY_BYTES = 4 * 1024 * 1024
BATCH_BYTES = int(min(MAX_BODY_BYTES, SERVERLESS_BODY_BYTES) * 0.7)


class EndpointError(UserError):
    """The endpoint cannot do what was asked; the message says what to do."""


Send = Callable[[bytes, str], dict]  # (body, content type) -> the endpoint's JSON answer


def invoke(send: Send, photo: Path, top_k: int = 3) -> list[dict]:
    """The top breeds of one photo, sent as JSON (base64), which every SageMaker client can send."""
    body = json.dumps({"image": base64.b64encode(photo.read_bytes()).decode(), "top_k": top_k})
    return send(body.encode(), JSON_TYPE)["predictions"][0]


def _batches(files: list[tuple[Path, int]]) -> Iterator[list[tuple[Path, int, bytes]]]:
    batch: list[tuple[Path, int, bytes]] = []
    size = 0
    for path, label in files:
        data = path.read_bytes()
        if batch and (len(batch) == MAX_IMAGES or size + len(data) > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((path, label, data))
        size += len(data)
    if batch:
        yield batch


@dataclass
class Evaluation:
    images: int
    correct: int
    per_breed: dict[str, tuple[int, int]]  # class folder -> (right, images)
    confusions: Counter  # (true class, predicted class) -> count
    seconds: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.images if self.images else 0.0


def evaluate(send: Send, split_dir: Path, classes: list[str] | None = None,
             progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """Every photo of ``split_dir/<class>/`` through the endpoint in JSON batches; ``classes``
    (the model's, when known) catches a split of other breeds before anything is sent."""
    folders = sorted(p for p in split_dir.iterdir() if p.is_dir())
    known = set(classes) if classes is not None else {f.name for f in folders}
    names = [f.name for f in folders]
    files = []
    for label, folder in enumerate(folders):
        if folder.name not in known:
            raise EndpointError(f"{split_dir}: class {folder.name!r} is not one the model knows")
        files += [(f, label) for f in sorted(folder.iterdir()) if f.is_file()]
    if not files:
        raise EndpointError(f"{split_dir} holds no images in class folders")
    started = time.monotonic()
    right: Counter = Counter()
    seen: Counter = Counter()
    confusions: Counter = Counter()
    done = 0
    for batch in _batches(files):
        body = json.dumps({"images": [base64.b64encode(d).decode() for _, _, d in batch], "top_k": 1})
        answer = send(body.encode(), JSON_TYPE)
        predictions = answer.get("predictions", [])
        if len(predictions) != len(batch):
            raise EndpointError(f"the endpoint answered {len(predictions)} predictions "
                                f"for {len(batch)} images")
        for (_, label, _), top in zip(batch, predictions, strict=True):
            truth, predicted = names[label], top[0]["class"]
            seen[truth] += 1
            if predicted == truth:
                right[truth] += 1
            else:
                confusions[truth, predicted] += 1
        done += len(batch)
        if progress:
            progress(done, len(files))
    per_breed = {c: (right[c], seen[c]) for c in seen}
    return Evaluation(len(files), sum(right.values()), per_breed, confusions, time.monotonic() - started)


def format_evaluation(result: Evaluation, worst: int = 10) -> str:
    lines = [f"accuracy {100 * result.accuracy:.1f}% ({result.correct} of {result.images} images, "
             f"{result.images / result.seconds:.1f} images/s)"]
    ranked = sorted(result.per_breed.items(), key=lambda kv: (kv[1][0] / kv[1][1], -kv[1][1], kv[0]))
    lines.append(f"hardest breeds (of {len(ranked)}):")
    lines += [f"  {display_name(c):<36} {r:>4}/{n:<4} {100 * r / n:5.1f}%" for c, (r, n) in ranked[:worst]]
    if result.confusions:
        lines.append("most confused (true -> predicted):")
        lines += [f"  {display_name(t)} -> {display_name(p)}: {n}"
                  for (t, p), n in result.confusions.most_common(worst)]
    return "\n".join(lines)
