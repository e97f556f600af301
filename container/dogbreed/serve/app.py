"""The Flask app behind ``serve``: GET /ping and POST /invocations (SageMaker hosting)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from dogbreed.contract.artifact import ArtifactError
from dogbreed.contract.environment import REQUIRE_GPU, ServingEnvironment
from dogbreed.data.images import ImageError
from dogbreed.model.hardware import nvidia_gpus
from dogbreed.serve import body, payloads
from dogbreed.serve.admission import Admission, Busy, Deadline, PixelBudget
from dogbreed.serve.predictor import Predictor
from dogbreed.serve.threads import SharedThreads

log = logging.getLogger("dogbreed.serve")


class CudaUnusable(RuntimeError):
    """The host has NVIDIA GPUs that CUDA cannot use, and serving on the CPU is not allowed."""


class ModelState:
    """The process's model: not loaded yet, loaded, or failed to load (with the reason)."""

    def __init__(self, model_dir: Path, precision: str = "fp32", threads: SharedThreads | None = None):
        self.model_dir = Path(model_dir)
        self.precision = precision
        self.threads = threads
        self.predictor: Predictor | None = None
        self.error: str | None = "model not loaded yet"
        self.cpu_fallback: str | None = None  # why a GPU worker serves on the CPU
        self._lock = threading.Lock()

    def load(self, device: torch.device | None = None, *, require_gpu: bool = False) -> None:
        """Load the model on ``device``; if CUDA cannot start there, on the CPU (with the reason
        logged and shown by /ping) unless ``require_gpu``, which raises :class:`CudaUnusable`."""
        with self._lock:
            started = time.monotonic()
            try:
                try:
                    self.predictor = Predictor(self.model_dir, device, self.precision, self.threads)
                except (RuntimeError, AssertionError) as exc:  # CUDA failed to start (driver, libraries)
                    if device is None or device.type != "cuda":
                        raise
                    self._fall_back(exc, require_gpu)
                self.error = None
            except ArtifactError as exc:  # metadata, classes or weights
                self.error = str(exc)
                log.error("model not loaded: %s", exc)
                return
            log.info("model loaded from %s on %s (%s): %d classes, %.2fs%s", self.model_dir,
                     self.predictor.device, self.precision, self.predictor.num_classes,
                     time.monotonic() - started,
                     f" (CPU fallback: {self.cpu_fallback})" if self.cpu_fallback else "")

    def _fall_back(self, exc: Exception, require_gpu: bool) -> None:
        gpus = nvidia_gpus()
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = f"{gpus.cannot_use() if gpus else 'CUDA cannot start'} ({cause})"
        if require_gpu:
            raise CudaUnusable(f"{reason}; {REQUIRE_GPU}=true: not serving on the CPU")
        log.warning("serve: %s; serving on the CPU instead (%s=true makes this fatal)",
                    reason, REQUIRE_GPU)
        self.cpu_fallback = reason
        self.predictor = Predictor(self.model_dir, torch.device("cpu"), self.precision, self.threads)


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message, "status": status}), status


def _predict(predictor: Predictor, record: payloads.Invocation, deadline: Deadline,
             budget: PixelBudget) -> list[list[dict[str, Any]]]:
    """One record's predictions (its photos decoded within the worker's pixel budget)."""
    pixels = []
    for i, data in enumerate(record.images):
        deadline.check()
        try:
            pixels.append(predictor.preprocess(data, hold=lambda n: budget.hold(n, deadline)))
        except ImageError as exc:
            where = (([f"line {record.line}"] if record.line else [])
                     + ([f"image {i}"] if len(record.images) > 1 else []))
            prefix = ", ".join(where) + ": " if where else ""
            raise payloads.RequestError(400, prefix + str(exc)) from None
    try:
        return predictor.predict(pixels, record.top_k, timeout=deadline.remaining())
    except TimeoutError:
        raise deadline.exceeded() from None


def create_app(state: ModelState, admission: Admission | None = None, *, concurrency: int = 1,
               settings: ServingEnvironment | None = None) -> Flask:
    """The app; ``admission`` bounds the work a worker takes on (default: 3 requests at once,
    60 s each); ``concurrency``: requests the whole server works on at once (batch transform's
    MaxConcurrentTransforms); ``settings``: serve's environment (the body limit and the batch
    strategy; default: SageMaker's defaults)."""
    admission = admission or Admission(capacity=3, working=3, timeout=60)
    settings = settings or ServingEnvironment()
    limit = settings.max_payload_bytes
    execution = {"MaxConcurrentTransforms": concurrency, "BatchStrategy": settings.batch_strategy,
                 "MaxPayloadInMB": settings.max_payload_mb}
    app = Flask("dogbreed")
    app.json.sort_keys = False

    @app.get("/ping")
    def ping() -> Any:
        predictor = state.predictor
        if predictor is None:
            return _error(503, state.error or "model not loaded")
        health = {"status": "ok", "classes": predictor.num_classes, "device": predictor.device.type,
                  "precision": predictor.precision}
        if state.cpu_fallback:
            health["cpu_fallback"] = state.cpu_fallback
        return jsonify(health)

    @app.get("/execution-parameters")
    def execution_parameters() -> Any:
        return jsonify(execution)

    @app.post("/invocations")
    def invocations() -> Any:
        return _invocations(state, admission, limit)

    _error_handlers(app, admission)
    return app


def _invocations(state: ModelState, admission: Admission, limit: int) -> Any:
    """POST /invocations: the photos of the request in, their breeds out."""
    predictor = state.predictor
    if predictor is None:
        body.drain(admission)
        return _error(503, state.error or "model not loaded")
    answer_type = request.accept_mimetypes.best_match([payloads.JSON_TYPE, payloads.JSONLINES_TYPE])
    if request.headers.get("Accept") and answer_type is None:
        body.drain(admission)  # unread, a body of megabytes would reset the connection before the answer
        return _error(406, "responses are application/json or application/jsonlines; Accept was "
                           f"{request.headers['Accept']!r}")
    attributes = request.headers.get(payloads.CUSTOM_ATTRIBUTES)
    with admission.request() as deadline:
        if request.mimetype == payloads.JSONLINES_TYPE:  # any size: read as it is answered
            records: Iterable[payloads.Invocation] = payloads.json_lines(
                body.lines(limit), query=request.args, custom_attributes=attributes,
                num_classes=predictor.num_classes)
        else:
            records = payloads.parse(request.mimetype, body.whole(limit), query=request.args,
                                     custom_attributes=attributes, num_classes=predictor.num_classes)
        with admission.work(deadline):
            answers = [_predict(predictor, record, deadline, admission.pixels) for record in records]
    if answer_type == payloads.JSONLINES_TYPE:
        lines = "".join(json.dumps({"predictions": a}, separators=(",", ":")) + "\n" for a in answers)
        return Response(lines, mimetype=payloads.JSONLINES_TYPE)
    return jsonify({"predictions": [photo for answer in answers for photo in answer]})


def _error_handlers(app: Flask, admission: Admission) -> None:
    """Every failure as a JSON error with its status: 4xx for the client's, 503 when busy."""

    @app.errorhandler(Busy)
    def busy(exc: Busy) -> Any:
        body.drain(admission)
        response, status = _error(503, str(exc))
        response.headers["Retry-After"] = "1"
        return response, status

    @app.errorhandler(payloads.RequestError)
    def client_error(exc: payloads.RequestError) -> Any:
        body.drain(admission)  # a JSON Lines body refused part way: the rest, so the client reads the answer
        return _error(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Any:
        log.exception("internal error on %s %s", request.method, request.path)
        return _error(500, f"internal error: {type(exc).__name__}")
