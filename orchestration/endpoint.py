"""The local backend's endpoint: the real `serve` as a background process, and its clients.

``deploy`` starts ``serve`` on a model folder (detached, logging to a file) and records it in
``<workdir>/endpoints/<name>.json``; ``invoke`` and ``evaluate`` talk HTTP to it, exactly as a
SageMaker endpoint is talked to (raw image bodies, or JSON batches); ``teardown`` stops it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from dogbreed.opt_ml import METADATA_FILE
from dogbreed.payloads import JSON_TYPE, MAX_BODY_BYTES, MAX_IMAGES
from dogbreed.predictor import display_name

DEFAULT_NAME = "dogbreed-local"
# A JSON batch stays under SageMaker's body limit: base64 grows bytes by 4/3, plus some slack.
BATCH_BYTES = int(MAX_BODY_BYTES * 0.7)


class EndpointError(Exception):
    """The endpoint cannot do what was asked; the message says what to do."""


@dataclass
class Endpoint:
    name: str
    url: str
    pid: int
    model_dir: str
    log: str
    started: float

    @staticmethod
    def state_file(workdir: Path, name: str) -> Path:
        return workdir / "endpoints" / f"{name}.json"

    @classmethod
    def load(cls, workdir: Path, name: str) -> Endpoint:
        path = cls.state_file(workdir, name)
        if not path.is_file():
            raise EndpointError(f"no endpoint {name!r}: run `dogctl deploy` first")
        return cls(**json.loads(path.read_text()))

    def save(self, workdir: Path) -> None:
        path = self.state_file(workdir, self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def newest_model(workdir: Path) -> Path:
    runs = sorted((workdir / "runs").glob(f"*/opt_ml/model/{METADATA_FILE}"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise EndpointError(f"no trained model under {workdir / 'runs'}: run `dogctl train` or pass --model")
    return runs[-1].parent


def model_folder(path: Path) -> Path:
    """A model folder from a model folder, an /opt/ml tree or a run folder."""
    for candidate in (path, path / "model", path / "opt_ml" / "model"):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    raise EndpointError(f"{path} holds no model written by train (no {METADATA_FILE})")


def _ping(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def deploy(workdir: Path, model_dir: Path, *, name: str = DEFAULT_NAME, port: int = 8080,
           workers: int | None = None, timeout: float = 120) -> Endpoint:
    """Start ``serve`` on ``model_dir`` in the background and wait until /ping says it is ready."""
    path = Endpoint.state_file(workdir, name)
    if path.is_file():
        old = Endpoint.load(workdir, name)
        if old.alive():
            raise EndpointError(f"endpoint {name!r} is already up at {old.url}: `dogctl teardown` first")
        path.unlink()
    url = f"http://127.0.0.1:{port}"
    if _ping(url)[0]:
        raise EndpointError(f"port {port} is taken (something answers at {url}): pass --port")
    log = path.parent / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    if workers:
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(workers)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dogbreed.serve", "--model-dir", str(model_dir)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    endpoint = Endpoint(name, url, proc.pid, str(model_dir), str(log), time.time())
    deadline = time.monotonic() + timeout
    while True:
        status, body = _ping(url)
        if status == 200:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.terminate()
            tail = "\n".join(Path(log).read_text().splitlines()[-5:])
            raise EndpointError(f"serve did not become ready ({body or 'no answer'}); log {log}:\n{tail}")
        time.sleep(0.2)
    endpoint.save(workdir)
    return endpoint


def teardown(workdir: Path, name: str = DEFAULT_NAME, timeout: float = 30) -> bool:
    """Stop the endpoint (SIGTERM: in-flight requests finish); False if there was none."""
    path = Endpoint.state_file(workdir, name)
    if not path.is_file():
        return False
    endpoint = Endpoint.load(workdir, name)
    if endpoint.alive():
        os.killpg(endpoint.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while endpoint.alive() and time.monotonic() < deadline:
            _reap(endpoint.pid)
            time.sleep(0.1)
        if endpoint.alive():
            os.killpg(endpoint.pid, signal.SIGKILL)
    path.unlink()
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child when deploy ran in this process (tests)
    except ChildProcessError:
        pass


Send = Callable[[bytes, str], dict]  # (body, content type) -> the endpoint's JSON answer


def http_send(url: str) -> Send:
    """POST to a local endpoint's /invocations (the SageMaker backend sends with invoke_endpoint)."""

    def send(body: bytes, content_type: str) -> dict:
        request = urllib.request.Request(url + "/invocations", data=body, method="POST",
                                         headers={"Content-Type": content_type, "Accept": JSON_TYPE})
        try:
            with urllib.request.urlopen(request, timeout=120) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                message = exc.reason
            raise EndpointError(f"HTTP {exc.code}: {message}") from exc
        except OSError as exc:
            raise EndpointError(f"no answer from {url} ({exc}): is the endpoint up? `dogctl deploy`") from exc

    return send


def ready(endpoint: Endpoint) -> Endpoint:
    status, body = _ping(endpoint.url)
    if status != 200:
        raise EndpointError(f"endpoint {endpoint.name!r} at {endpoint.url} is not answering "
                            f"({body or 'no answer'}): `dogctl teardown` then `dogctl deploy`")
    return endpoint


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
