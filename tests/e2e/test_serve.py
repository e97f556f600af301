"""The real `serve` (gunicorn + Flask) over HTTP on loopback, on a model trained by `train`."""

from __future__ import annotations

import base64
import http.client
import json
import random
import re
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from PIL import Image

from local_test.testdata import draw_image
from tests.helpers import Server, encode, png_bomb, post, slowest_ping, wait_until, with_old_driver

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(trained_model, tmp_path_factory):
    with Server(trained_model, workers=2, log=tmp_path_factory.mktemp("serve") / "serve.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def photo(sample_photos) -> bytes:
    return sample_photos[0].read_bytes()


def invoke(server, body, content_type="image/jpeg", **kw):
    return post(server.url + "/invocations", body, content_type, **kw)


def test_ping(server):
    with urllib.request.urlopen(server.url + "/ping") as resp:
        health = json.loads(resp.read())
        assert resp.status == 200 and health == {"status": "ok", "classes": 3, "device": "cpu",
                                                 "precision": "fp32"}


def test_a_real_photo_gives_the_top_breeds(server, photo):
    status, body = invoke(server, photo)
    assert status == 200
    (preds,) = body["predictions"]
    assert len(preds) == 3  # top 5 by default, but the model knows 3 breeds
    assert {p["class"] for p in preds} == {"001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"}
    assert preds[0] == {"breed": preds[0]["breed"], "class": preds[0]["class"], "index": preds[0]["index"],
                        "probability": preds[0]["probability"]}
    assert [p["probability"] for p in preds] == sorted((p["probability"] for p in preds), reverse=True)
    assert sum(p["probability"] for p in preds) == pytest.approx(1.0, abs=1e-4)
    assert preds[0]["breed"] in {"Affenpinscher", "Afghan hound", "Airedale terrier"}


def test_the_model_recognises_its_classes_over_http(server):
    rng = random.Random(7)
    for label, name in enumerate(["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]):
        status, body = invoke(server, encode(draw_image(label, 48, rng), "PNG"), "image/png")
        assert status == 200 and body["predictions"][0][0]["class"] == name


def test_the_int8_model_train_wrote_answers_as_fp32_does(trained_model, tmp_path, sample_photos):
    meta = json.loads((trained_model / "metadata.json").read_text())["int8"]
    assert meta["engine"] == "x86" and meta["calibration_images"] == 60 and meta["split"] == "test"
    assert meta["acc"] == meta["fp32_acc"] == 1.0 and meta["agreement"] == 1.0
    rng = random.Random(7)
    drawings = [encode(draw_image(label, 48, rng), "PNG") for label in range(3) for _ in range(3)]
    answers = {}
    for precision in ("fp32", "int8"):
        with Server(trained_model, env={"DOGBREED_PRECISION": precision},
                    log=tmp_path / f"{precision}.log") as srv:
            with urllib.request.urlopen(srv.url + "/ping") as resp:
                assert json.loads(resp.read())["precision"] == precision
            answers[precision] = [invoke(srv, body, "image/png")[1]["predictions"][0] for body in drawings]
            answers[precision] += [invoke(srv, p.read_bytes())[1]["predictions"][0] for p in sample_photos]
    assert [a[0]["class"] for a in answers["int8"][:9]] == [
        name for name in ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"] for _ in range(3)]
    for fp32, int8 in zip(answers["fp32"], answers["int8"], strict=True):
        assert int8[0]["class"] == fp32[0]["class"]
        assert int8[0]["probability"] == pytest.approx(fp32[0]["probability"], abs=0.05)


def test_int8_without_an_int8_model_or_an_unknown_precision_is_explained(trained_model, tmp_path, photo):
    fp32_only = tmp_path / "model"
    shutil.copytree(trained_model, fp32_only)
    meta = json.loads((fp32_only / "metadata.json").read_text())
    (fp32_only / "metadata.json").write_text(json.dumps({**meta, "int8": {}}))
    srv = Server(fp32_only, env={"DOGBREED_PRECISION": "int8"}, log=tmp_path / "serve.log")
    try:
        srv.wait_ready(expect=503)
        status, body = invoke(srv, photo)
    finally:
        srv.stop()
    assert status == 503 and "has no int8 model" in body["error"]
    assert "int8_calibration_images" in body["error"]
    srv = Server(trained_model, env={"DOGBREED_PRECISION": "fp16"}, log=tmp_path / "fp16.log")
    assert srv.proc.wait(60) != 0 and "DOGBREED_PRECISION='fp16': expected fp32 or int8" in srv.log()


@pytest.mark.parametrize("name,value,accepts", [
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "six", "a whole number of MB, 1 to 1024"),
    ("SAGEMAKER_MODEL_SERVER_WORKERS", "0", "a whole number of processes, 1 to 1024"),
    ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "1m", "a whole number of seconds, 1 to 3600"),
])
def test_a_bad_setting_stops_serve_at_start_with_one_line_naming_it(trained_model, tmp_path, name, value,
                                                                    accepts):
    """One policy for every variable: serve refuses to start (it once served with 6 MB instead of a
    bad SAGEMAKER_MAX_PAYLOAD_IN_MB), and says which variable and what it takes."""
    setting = {"workers": value} if name == "SAGEMAKER_MODEL_SERVER_WORKERS" else {"env": {name: value}}
    srv = Server(trained_model, log=tmp_path / "serve.log", **setting)
    assert srv.proc.wait(60) != 0
    assert f"serve: {name}={value!r}: expected {accepts}" in srv.log()
    assert "Traceback" not in srv.log()


@pytest.mark.parametrize("content_type,fmt", [
    ("image/jpeg", "JPEG"), ("image/png", "PNG"), ("application/x-image", "JPEG"),
    ("image/webp", "WEBP"), ("application/x-image", "BMP"), ("application/octet-stream", "GIF"),
    ("image/jpeg", "PNG"),  # the content decides, not the label
    ("IMAGE/JPEG; charset=binary", "JPEG"),
])
def test_every_accepted_content_type(server, content_type, fmt):
    img = draw_image(1, 64, random.Random(1))
    status, body = invoke(server, encode(img, fmt), content_type)
    assert status == 200, body
    assert body["predictions"][0][0]["class"] == "002.Afghan_hound"


def test_modes_and_sizes_are_handled(server):
    base = draw_image(0, 300, random.Random(3))
    for img, fmt in [(base.convert("L"), "PNG"), (base.convert("P"), "PNG"), (base.convert("RGBA"), "PNG"),
                     (base.convert("CMYK"), "JPEG"), (base.resize((1, 1)), "PNG"),
                     (base.resize((4000, 3000)), "JPEG"), (base.convert("I;16"), "PNG")]:
        status, body = invoke(server, encode(img, fmt), "image/png")
        assert status == 200, (img.mode, img.size, body)


def test_batch_json_and_top_k(server, sample_photos):
    images = [base64.b64encode(p.read_bytes()).decode() for p in sample_photos[:3]]
    status, body = invoke(server, json.dumps({"images": images, "top_k": 2}).encode(), "application/json")
    assert status == 200 and [len(p) for p in body["predictions"]] == [2, 2, 2]
    # Each image's answer in a batch equals its answer alone.
    for img, preds in zip(images, body["predictions"], strict=True):
        alone = invoke(server, json.dumps({"image": "data:image/jpeg;base64," + img, "top_k": 2}).encode(),
                       "application/json")[1]["predictions"][0]
        assert [p["class"] for p in alone] == [p["class"] for p in preds]
        assert [p["probability"] for p in alone] == pytest.approx([p["probability"] for p in preds], abs=1e-5)


def test_top_k_from_header_and_query(server, photo):
    header = {"X-Amzn-SageMaker-Custom-Attributes": "foo=bar, top_k=1"}
    assert [len(p) for p in invoke(server, photo, headers=header)[1]["predictions"]] == [1]
    status, body = post(server.url + "/invocations?top_k=2", photo)
    assert status == 200 and len(body["predictions"][0]) == 2


def test_exif_orientation_is_honoured(server):
    img = draw_image(0, 64, random.Random(5)).resize((96, 48))
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    tagged = encode(img, "PNG", exif=exif.tobytes())
    upright = encode(img.transpose(Image.Transpose.ROTATE_270), "PNG")
    untagged = encode(img, "PNG")
    answers = [invoke(server, b, "image/png")[1]["predictions"][0] for b in (tagged, upright, untagged)]
    assert answers[0] == answers[1]
    assert answers[0] != answers[2]


@pytest.mark.parametrize("body,content_type,status,fragment", [
    (b"", "image/jpeg", 400, "empty request body"),
    (b"this is not an image", "image/jpeg", 400, "not an image format"),
    (encode(Image.new("RGB", (30, 30)), "GIF")[:40], "image/gif", 400, "could not be decoded"),
    (png_bomb(40000, 40000), "image/png", 400, "decompression bomb"),
    (b"{not json", "application/json", 400, "invalid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested too deeply"),  # was a 500
    (b'{"images": []}', "application/json", 400, "non-empty list"),
    (b'{"images": ["@@@"]}', "application/json", 400, "image 0: not valid base64"),
    (b'{"images": [42]}', "application/json", 400, "expected a base64 string"),
    (b'{"image": "aGVsbG8="}', "application/json", 400, "not an image format"),
    (b'{"pictures": []}', "application/json", 400, 'must be an object with "images"'),
    (b'{"image": "aGVsbG8=", "top_k": 0}', "application/json", 400, "top_k must be at least 1"),
    (b'{"image": "aGVsbG8=", "top_k": "x"}', "application/json", 400, "top_k must be a whole number"),
    (b'{"image": "aGVsbG8=", "top_k": 1e400}', "application/json", 400, "got inf"),  # was a 500
    (b'{"image": "aGVsbG8=", "top_k": ' + b"9" * 5000 + b"}", "application/json", 400,
     "number too long"),  # was a 500
    (b"a,b\n1,2", "text/csv", 415, "unsupported Content-Type 'text/csv'"),
    (b"a=b", "application/x-www-form-urlencoded", 415, "unsupported Content-Type"),
])
def test_client_errors_are_4xx_with_a_reason(server, body, content_type, status, fragment):
    got, answer = invoke(server, body, content_type)
    assert got == status and fragment in answer["error"] and answer["status"] == status


def test_no_content_type_is_a_415(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/invocations", body=b"xxx")  # http.client adds no Content-Type
    resp = conn.getresponse()
    assert resp.status == 415 and "no Content-Type" in json.loads(resp.read())["error"]
    conn.close()


def test_truncated_jpeg_is_a_400(server, photo):
    status, body = invoke(server, photo[: len(photo) // 2])
    assert status == 400 and "truncated" in body["error"]


def test_too_many_images_in_a_batch(server):
    status, body = invoke(server, json.dumps({"images": ["aGVsbG8="] * 65}).encode(), "application/json")
    assert status == 413 and "at most 64" in body["error"]


def test_a_body_over_6_mb_is_a_413(server):
    status, body = invoke(server, b"\xff" * (7 * 1024 * 1024))
    assert status == 413 and "6,291,456" in body["error"]


def test_other_errors_are_json_too(server, photo):
    assert invoke(server, photo, headers={"Accept": "text/csv"})[0] == 406
    big = b"\xff" * (5 * 1024 * 1024)  # within the limit, refused before it is read: drained, not reset
    assert invoke(server, big, headers={"Accept": "text/csv"})[0] == 406
    assert invoke(server, photo, headers={"Accept": "application/json, text/plain"})[0] == 200
    for method, path, code in [("GET", "/invocations", 405), ("GET", "/nothing", 404)]:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(server.url + path, method=method))
        assert err.value.code == code and json.loads(err.value.read())["status"] == code


def test_no_input_breaks_a_worker_and_logs_hold_no_image_bytes(server, photo):
    rng = random.Random(11)
    types = ["image/jpeg", "image/png", "application/json", "application/x-image", "text/plain"]
    bodies = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(40)]
    bodies += [photo[:n] for n in (2, 100, 1000, 5000)] + [photo[:200] + rng.randbytes(5000)]
    for body in bodies:
        status, answer = invoke(server, body, rng.choice(types))
        assert 400 <= status < 500, answer
    assert invoke(server, photo)[0] == 200
    log = server.log()
    assert " 500 " not in log and "Traceback" not in log
    assert len(re.findall(r"Booting worker", log)) == 2  # no worker died and was replaced
    assert base64.b64encode(photo[:30]).decode()[:20] not in log
    # One access line per request, with its latency.
    assert re.search(r'"POST /invocations HTTP/1.1" 200 \d+B \d+ms', log)


def test_concurrent_requests_on_two_workers(server, sample_photos):
    bodies = [p.read_bytes() for p in sample_photos] * 4
    sequential = [invoke(server, b)[1] for b in bodies[: len(sample_photos)]]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda b: invoke(server, b), bodies))
    assert all(status == 200 for status, _ in results)
    for i, (_, body) in enumerate(results):
        expected = sequential[i % len(sample_photos)]["predictions"][0]
        assert [p["class"] for p in body["predictions"][0]] == [p["class"] for p in expected]
    assert len(re.findall(r"model loaded from", server.log())) == 2


def test_json_lines_are_answered_line_for_line(server, sample_photos):
    # What batch transform sends with SplitType Line and BatchStrategy MultiRecord.
    photos = [base64.b64encode(p.read_bytes()).decode() for p in sample_photos[:3]]
    lines = [{"image": photos[0]}, {"images": photos[1:3], "top_k": 2}]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    request = urllib.request.Request(server.url + "/invocations", data=body, method="POST", headers={
        "Content-Type": "application/jsonlines", "Accept": "application/jsonlines"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.headers["Content-Type"].startswith("application/jsonlines")
        answers = [json.loads(line) for line in resp.read().decode().splitlines()]
    # Each line as its own request would have been answered.
    alone = [invoke(server, json.dumps(line).encode(), "application/json")[1] for line in lines]
    assert answers == alone and [len(a["predictions"]) for a in answers] == [1, 2]
    assert len(answers[1]["predictions"][0]) == 2
    # Without Accept: one JSON answer, one list per photo in order.
    status, flat = invoke(server, body, "application/jsonlines")
    assert status == 200 and flat["predictions"] == [p for a in alone for p in a["predictions"]]


def test_execution_parameters_and_batch_transform_payloads(trained_model, tmp_path, sample_photos):
    env = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "12", "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD"}
    srv = Server(trained_model, workers=1, env=env, log=tmp_path / "serve.log")
    try:
        srv.wait_ready()
        with urllib.request.urlopen(srv.url + "/execution-parameters") as resp:
            assert json.loads(resp.read()) == {"MaxConcurrentTransforms": 16,
                                               "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 12}
        # Over the real-time 6 MB, within the transform's 12 MB: 25 lines of 7 photos.
        line = json.dumps({"images": [base64.b64encode(p.read_bytes()).decode() for p in sample_photos]})
        body = ((line + "\n") * 25).encode()
        assert 6 * 1024 * 1024 < len(body) < 12 * 1024 * 1024
        status, answer = invoke(srv, body, "application/jsonlines")
        assert status == 200 and len(answer["predictions"]) == 25 * len(sample_photos)
    finally:
        srv.stop()


def batch_of_63(sample_photos) -> bytes:
    """A JSON body of 63 full-size photos (about 4 MB): a heavy request."""
    photos = [base64.b64encode(p.read_bytes()).decode() for p in sample_photos]
    return json.dumps({"images": photos * 9}).encode()


def saturate(srv: Server, body: bytes, clients: int, seconds: float) -> tuple[float, list[tuple[int, str]]]:
    """``clients`` threads send ``body`` again and again for ``seconds`` while /ping is polled;
    (the slowest /ping, every (status, error) answered)."""
    stop = time.monotonic() + seconds
    answers: list[tuple[int, str]] = []

    def hammer() -> None:
        while time.monotonic() < stop:
            try:
                status, answer = invoke(srv, body, "application/json", timeout=120)
            except (OSError, ValueError) as exc:  # no answer, or not JSON: raised in this thread,
                answers.append((0, repr(exc)))  # it would end the thread unseen by the test
                return
            answers.append((status, answer.get("error", "")))

    threads = [threading.Thread(target=hammer) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1)
    worst = slowest_ping(srv.url, stop, 0.1)
    for t in threads:
        t.join()
    unanswered = [error for status, error in answers if not status]
    assert not unanswered, f"{len(unanswered)} request(s) got no answer: {unanswered[:3]}"
    return worst, answers


def test_ping_answers_within_2_s_with_the_worker_saturated(trained_model, tmp_path, sample_photos):
    # One worker, more heavy requests in flight than it has threads: /ping still answers within
    # SageMaker's 2 s; requests over the worker's capacity get a 503 that says so, at once.
    srv = Server(trained_model, workers=1, log=tmp_path / "serve.log")
    try:
        srv.wait_ready()
        worst, answers = saturate(srv, batch_of_63(sample_photos), clients=40, seconds=8)
    finally:
        srv.stop()
    assert worst < 2.0, worst  # SageMaker's health-check limit
    statuses = {status for status, _ in answers}
    assert 200 in statuses and statuses <= {200, 503}, statuses
    assert all("requests in progress; retry" in error for status, error in answers if status == 503)


def test_the_model_server_timeout_bounds_a_request(trained_model, tmp_path, sample_photos):
    srv = Server(trained_model, workers=1, env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"},
                 log=tmp_path / "serve.log")
    try:
        srv.wait_ready()
        started = time.monotonic()
        _, answers = saturate(srv, batch_of_63(sample_photos), clients=12, seconds=4)
    finally:
        srv.stop()
    # Every request was answered (no hung connection); those that could not be served within
    # the second were told so.
    assert time.monotonic() - started < 30
    late = [error for status, error in answers if status == 503]
    assert late and all("SAGEMAKER_MODEL_SERVER_TIMEOUT" in e or "in progress" in e for e in late), late
    assert {status for status, _ in answers} <= {200, 503}


def test_sigterm_drains_in_flight_requests(trained_model, tmp_path, sample_photos):
    body = json.dumps({"images": [base64.b64encode(p.read_bytes()).decode() for p in sample_photos] * 9
                       }).encode()
    srv = Server(trained_model, workers=1, log=tmp_path / "serve.log")
    srv.wait_ready()
    host, port = srv.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/invocations")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[:-1000])
    client = conn.sock.getsockname()
    workers = psutil.Process(srv.proc.pid).children()

    def accepted() -> bool:  # a worker holds our connection: the request is in flight
        return any(c.raddr and tuple(c.raddr) == client for w in workers for c in w.net_connections("tcp"))

    wait_until(accepted, 30, "a worker accepting the connection")
    srv.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "Handling signal: term" in (tmp_path / "serve.log").read_text(), 30,
               "the server taking SIGTERM")
    conn.send(body[-1000:])  # the rest arrives after SIGTERM: the request is in flight by construction
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    answered = time.monotonic()
    code = srv.stop()
    assert resp.status == 200 and len(answer["predictions"]) == 63
    assert code == 0 and time.monotonic() - answered < 30
    assert "Handling signal: term" in (tmp_path / "serve.log").read_text()
    with pytest.raises(OSError):
        urllib.request.urlopen(srv.url + "/ping", timeout=2)


def test_a_missing_model_answers_503_with_the_reason(tmp_path, trained_model, photo):
    broken = tmp_path / "model"
    shutil.copytree(trained_model, broken)
    (broken / "model.pt").unlink()
    srv = Server(broken, log=tmp_path / "serve.log")
    try:
        srv.wait_ready(expect=503)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(srv.url + "/ping")
        assert "model.pt is missing" in json.loads(err.value.read())["error"]
        status, body = invoke(srv, photo)
        assert status == 503 and "model.pt is missing" in body["error"]
        # A body of megabytes too: read before the answer, so no reset connection.
        status, body = invoke(srv, photo * (5_000_000 // len(photo)))
        assert status == 503 and "model.pt is missing" in body["error"]
    finally:
        srv.stop()


def test_ready_within_seconds_on_cpu(trained_model, tmp_path):
    srv = Server(trained_model, workers=1, log=tmp_path / "serve.log")
    try:
        seconds = srv.wait_ready()
    finally:
        srv.stop()
    # The target is 3 s on an idle 2-core machine (bench/serve_bench.py reports it); this bound only
    # catches a regression such as a per-request model load or a torchvision import.
    assert seconds < 10


def test_a_gpu_cuda_cannot_start_on_serves_on_the_cpu_and_says_why(trained_model, tmp_path, photo):
    # NVML reports a T4 with driver 470 (a g4dn host's default), so each worker tries CUDA, which
    # cannot start here: the worker must serve on the CPU, not fail to boot.
    env = with_old_driver({}, tmp_path / "nvml")
    srv = Server(trained_model, workers=1, env=env, log=tmp_path / "serve.log")
    try:
        srv.wait_ready()
        with urllib.request.urlopen(srv.url + "/ping") as resp:
            health = json.loads(resp.read())
        assert health["device"] == "cpu"
        reason = health["cpu_fallback"]
        assert reason.startswith("1 NVIDIA GPU(s) (Tesla T4) with driver 470.256.02, but torch ")
        assert invoke(srv, photo)[0] == 200
        assert "serving on the CPU instead (DOGBREED_REQUIRE_GPU=true makes this fatal)" in srv.log()
    finally:
        srv.stop()


def test_the_gpu_can_be_required(trained_model, tmp_path):
    env = with_old_driver({"DOGBREED_REQUIRE_GPU": "true"}, tmp_path / "nvml")
    srv = Server(trained_model, workers=1, env=env, log=tmp_path / "serve.log")
    with pytest.raises(RuntimeError, match="serve exited"):
        srv.wait_ready()
    log = srv.log()
    assert "DOGBREED_REQUIRE_GPU=true: not serving on the CPU" in log and "driver 470.256.02" in log
    assert srv.proc.returncode != 0
    srv.stop()


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def test_a_json_lines_body_of_any_size_is_answered_a_line_at_a_time(trained_model, tmp_path, photo):
    # An asynchronous endpoint (`dogctl deploy --async`) takes bodies up to 1 GB: a 150 MB one
    # must not sit whole in a worker's memory (it did, twice over: the body and its lines).
    srv = Server(trained_model, workers=1, env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1024"},
                 log=tmp_path / "serve.log")
    try:
        srv.wait_ready()
        (worker,) = psutil.Process(srv.proc.pid).children(recursive=True)
        line = json.dumps({"image": base64.b64encode(photo).decode(), "note": "x" * (1 << 20)}) + "\n"
        assert invoke(srv, line.encode(), "application/jsonlines")[0] == 200  # warm
        before = _peak_rss_mb(worker.pid)
        body = (line * 150).encode()
        assert len(body) > 150 * (1 << 20)
        status, answer = invoke(srv, body, "application/jsonlines", timeout=300)
        assert status == 200 and len(answer["predictions"]) == 150
        assert answer["predictions"][0] == answer["predictions"][-1]
        grown = _peak_rss_mb(worker.pid) - before
        assert grown < 40, f"the worker's peak memory grew by {grown:.0f} MB for a 150 MB body"
        # A body read whole (a photo, JSON) stays under 100 MB whatever the limit: JSON Lines for more.
        big = json.dumps({"image": "A" * (101 << 20)}).encode()
        status, refused = invoke(srv, big, "application/json", timeout=300)
        assert status == 413 and "for a photo or a JSON body (send JSON Lines for more)" in refused["error"]
        assert invoke(srv, photo)[0] == 200
    finally:
        srv.stop()


def test_a_chunked_json_lines_body_past_the_limit_is_refused_as_it_arrives(trained_model, tmp_path, photo):
    # No Content-Length to refuse it by: the lines are counted as they come.
    srv = Server(trained_model, workers=1, env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"},
                 log=tmp_path / "serve.log")
    try:
        srv.wait_ready()
        line = (json.dumps({"image": base64.b64encode(photo).decode()}) + "\n").encode()
        chunks = [line] * (2 * (1 << 20) // len(line) + 1)
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        conn.request("POST", "/invocations", body=iter(chunks), encode_chunked=True,
                     headers={"Content-Type": "application/jsonlines"})
        resp = conn.getresponse()
        assert resp.status == 413, resp.read()
        assert "over the limit of 1,048,576 bytes" in json.loads(resp.read())["error"]
        conn.close()
        with urllib.request.urlopen(srv.url + "/ping", timeout=5) as ping:
            assert ping.status == 200
    finally:
        srv.stop()
