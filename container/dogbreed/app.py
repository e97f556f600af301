"""The Flask app behind ``serve``: GET /ping and POST /invocations (SageMaker hosting)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import torch
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from . import payloads
from .artifact import ArtifactError
from .images import ImageError
from .predictor import Predictor

log = logging.getLogger("dogbreed.serve")
DRAIN_LIMIT = 64 * 1024 * 1024  # read and drop at most this much of a refused body


class ModelState:
    """The process's model: not loaded yet, loaded, or failed to load (with the reason)."""

    def __init__(self, model_dir: Path):
        self.model_dir = Path(model_dir)
        self.predictor: Predictor | None = None
        self.error: str | None = "model not loaded yet"
        self._lock = threading.Lock()

    def load(self, device: torch.device | None = None) -> None:
        with self._lock:
            started = time.monotonic()
            try:
                self.predictor = Predictor(self.model_dir, device)
                self.error = None
            except ArtifactError as exc:  # metadata, classes or weights
                self.error = str(exc)
                log.error("model not loaded: %s", exc)
                return
            log.info("model loaded from %s on %s: %d classes, %.2fs", self.model_dir,
                     self.predictor.device, self.predictor.num_classes, time.monotonic() - started)


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message, "status": status}), status


def _read_body(limit: int) -> bytes:
    """The body, or ClientError(413) past ``limit`` (the rest drained, so the client reads
    the answer instead of a reset connection)."""
    stream = request.stream
    length = request.content_length
    if length is not None and length > limit:
        remaining = min(length, DRAIN_LIMIT)
        while remaining > 0 and (chunk := stream.read(min(remaining, 1 << 20))):
            remaining -= len(chunk)
        raise payloads.ClientError(413, f"request body is {length:,} bytes; the limit is {limit:,}")
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise payloads.ClientError(413, f"request body is over the limit of {limit:,} bytes")
    return body


def create_app(state: ModelState) -> Flask:
    app = Flask("dogbreed")
    app.json.sort_keys = False

    @app.get("/ping")
    def ping() -> Any:
        predictor = state.predictor
        if predictor is None:
            return _error(503, state.error or "model not loaded")
        return jsonify({"status": "ok", "classes": predictor.num_classes})

    @app.post("/invocations")
    def invocations() -> Any:
        predictor = state.predictor
        if predictor is None:
            return _error(503, state.error or "model not loaded")
        accept = request.headers.get("Accept")
        if accept and not request.accept_mimetypes.accept_json:
            return _error(406, f"responses are application/json; Accept was {accept!r}")
        body = _read_body(payloads.MAX_BODY_BYTES)
        invocation = payloads.parse(
            request.mimetype, body, query=request.args,
            custom_attributes=request.headers.get(payloads.CUSTOM_ATTRIBUTES),
            num_classes=predictor.num_classes,
        )
        tensors = []
        for i, data in enumerate(invocation.images):
            try:
                tensors.append(predictor.preprocess(data))
            except ImageError as exc:
                prefix = f"image {i}: " if len(invocation.images) > 1 else ""
                raise payloads.ClientError(400, prefix + str(exc)) from None
        return jsonify({"predictions": predictor.predict(tensors, invocation.top_k)})

    @app.errorhandler(payloads.ClientError)
    def client_error(exc: payloads.ClientError) -> Any:
        return _error(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Any:
        log.exception("internal error on %s %s", request.method, request.path)
        return _error(500, f"internal error: {type(exc).__name__}")

    return app
