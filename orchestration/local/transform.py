"""The local batch transform: what a SageMaker transform job does, on this machine.

The real ``serve`` starts on a free port with the environment a transform job gives it
(SAGEMAKER_BATCH_STRATEGY, SAGEMAKER_MAX_PAYLOAD_IN_MB); its /execution-parameters says how many
requests to keep in flight, as SageMaker asks it; each photo goes as one raw request
(SplitType None) and its answer is written to ``<photo>.out``, SageMaker's output layout.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.request import urlopen

from ..invocation import EndpointError
from ..transform import OUT_SUFFIX, RAW_CONTENT_TYPE
from . import hosting


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(workdir: Path, model_dir: Path, data_dir: Path, inputs: list[str], output_dir: Path, *,
        name: str, max_payload_mb: int, environment: dict[str, str] | None = None,
        progress: Callable[[int, int], None] | None = None, emit: Callable[[str], None] = print,
        ) -> dict[str, str]:
    """Transform ``inputs`` (paths under ``data_dir``) into ``output_dir``; the photos that
    failed, with the server's reason (SageMaker would fail the whole job; here the rest go on)."""
    env = {"SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD", "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(max_payload_mb),
           **(environment or {})}
    ep = hosting.deploy(workdir, model_dir, name=f"transform-{name}", port=_free_port(), environment=env)
    try:
        with urlopen(ep.url + "/execution-parameters", timeout=10) as resp:
            concurrency = int(json.load(resp)["MaxConcurrentTransforms"])
        emit(f"transform: serve on {ep.url} ({model_dir}), {concurrency} requests in flight")
        send = hosting.http_send(ep.url)
        failures: dict[str, str] = {}

        def one(rel: str) -> None:
            try:
                answer = send((data_dir / rel).read_bytes(), RAW_CONTENT_TYPE)
            except EndpointError as exc:
                failures[rel] = str(exc)
                return
            out = output_dir / (rel + OUT_SUFFIX)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(answer))

        with ThreadPoolExecutor(concurrency) as pool:
            for done, _ in enumerate(pool.map(one, inputs), 1):
                if progress:
                    progress(done, len(inputs))
        return failures
    finally:
        hosting.teardown(workdir, ep.name)
