"""The local backend's endpoint: the real `serve` as a background process.

``deploy`` starts ``serve`` on a model folder (detached, logging to a file) and records it in
``<workdir>/endpoints/<name>.json``; :func:`http_send` talks HTTP to it, exactly as a SageMaker
endpoint is talked to (:mod:`orchestration.invocation`); ``teardown`` stops it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from dogbreed.contract.artifact import METADATA_FILE, ArtifactError, ModelArtifact
from dogbreed.contract.environment import BIND_HOST, PORT, WORKERS
from dogbreed.serve.payloads import JSON_TYPE

from ..invocation import EndpointError, Send

DEFAULT_NAME = "dogbreed-local"


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


def endpoints(workdir: Path) -> list[Endpoint]:
    """Every endpoint deployed under ``workdir`` (running or not), by name."""
    return [Endpoint(**json.loads(path.read_text()))
            for path in sorted((workdir / "endpoints").glob("*.json"))]


def newest_model(workdir: Path) -> Path:
    """The model folder of the newest finished run under ``workdir/runs``."""
    runs = sorted((workdir / "runs").glob(f"*/opt_ml/model/{METADATA_FILE}"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise EndpointError(f"no trained model under {workdir / 'runs'}: run `dogctl train` or pass --model")
    return runs[-1].parent


def model_folder(path: Path) -> Path:
    """A model folder from a model folder, an /opt/ml tree or a run folder."""
    try:
        return ModelArtifact.locate(path)
    except ArtifactError as exc:
        raise EndpointError(str(exc)) from exc


def _ping(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


SECRET_PREFIXES = ("AWS_",)  # keys, tokens, profiles: serve needs none of them
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "CREDENTIAL")


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment less what a model server has no use for and must not hold:
    AWS credentials and anything named like a secret (a local endpoint runs a model, not AWS)."""
    return {k: v for k, v in env.items()
            if not k.upper().startswith(SECRET_PREFIXES) and not any(w in k.upper() for w in SECRET_WORDS)}


def deploy(workdir: Path, model_dir: Path, *, name: str = DEFAULT_NAME, port: int = 8080,
           workers: int | None = None, environment: dict[str, str] | None = None,
           timeout: float = 120) -> Endpoint:
    """Start ``serve`` on ``model_dir`` in the background, listening on 127.0.0.1 (``environment``,
    e.g. ``DOGBREED_BIND_HOST``, added to the caller's, whose secrets it never gets), and wait until
    /ping says it is ready."""
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
    env = {**server_environment(os.environ), BIND_HOST: "127.0.0.1", **(environment or {}),
           PORT: str(port), "PYTHONUNBUFFERED": "1"}
    if workers:
        env[WORKERS] = str(workers)
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


