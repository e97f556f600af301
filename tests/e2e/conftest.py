"""A SageMaker account for dogctl's end-to-end tests: moto's server over real HTTP behind a small
proxy that plays what moto does not (a tuning job that runs a while and ends with real-looking
trials, jobs in progress, warm pools, stop calls); everything else goes to moto as is."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import subprocess
import threading
import urllib.parse

import pytest

from local_test.testdata import make_dataset
from tests.helpers import BIN, BUCKET, IMAGE, ROLE

TRIALS = [  # (name, status, valid_acc, tuned hyperparameters) as SageMaker lists them
    ("t-001-aaa", "Completed", 0.41, {"lr": "0.0012", "weight_decay": "0.01", "batch_size": '"64"'}),
    ("t-002-bbb", "Completed", 0.55, {"lr": "0.00031", "weight_decay": "0.002", "batch_size": '"32"'}),
    ("t-003-ccc", "Stopped", 0.12, {"lr": "0.009", "weight_decay": "0.08", "batch_size": '"256"'}),
    ("t-004-ddd", "Failed", None, {"lr": "1e-05", "weight_decay": "0.0001", "batch_size": '"128"'}),
]


class SageMakerProxy(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1, so that an upload's "Expect: 100-continue" is answered at once (HTTP/1.0 left
    # botocore waiting a second for each PutObject).
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._forward()

    def do_PUT(self):
        self._forward()

    def do_HEAD(self):
        self._forward()

    def do_DELETE(self):
        self._forward()

    def do_POST(self):
        target = self.headers.get("X-Amz-Target", "")
        action = target.rpartition(".")[2]
        if action in ("StopTrainingJob", "StopHyperParameterTuningJob"):  # moto has neither
            self.server.stops.append((action, json.loads(self._body())))
            return self._answer({})
        if action == "ListTrainingJobs":  # moto's jobs end at once and have no warm pools
            return self._list_training_jobs(json.loads(self._body()))
        if action == "DescribeTrainingJob":
            status, headers, body = self._relay(self._body())
            job = json.loads(body)
            if status == 200 and job["TrainingJobName"] in self.server.running:
                job["TrainingJobStatus"] = "InProgress"
            if status == 200:
                job.update(self.server.finished.get(job["TrainingJobName"], {}))
            return self._answer(job, status)
        if target.endswith(".ListTrainingJobsForHyperParameterTuningJob"):
            return self._answer({"TrainingJobSummaries": [
                {"TrainingJobName": n, "TrainingJobStatus": st, "TunedHyperParameters": hp,
                 "TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{n}",
                 "CreationTime": 1700000000,
                 **({"FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "valid_acc", "Value": v}}
                    if v is not None else {})}
                for n, st, v, hp in TRIALS]})
        if target.endswith(".DescribeHyperParameterTuningJob"):
            status, headers, body = self._relay(self._body())
            job = json.loads(body)
            if status != 200:
                return self._answer(job, status)
            self.server.describes += 1
            running = self.server.describes < 3  # in progress twice, then done
            job["HyperParameterTuningJobStatus"] = "InProgress" if running else "Completed"
            job["TrainingJobStatusCounters"] = (
                {"Completed": 1, "InProgress": 2} if running
                else {"Completed": 2, "Stopped": 1, "NonRetryableError": 1})
            job["BestTrainingJob"] = {"TrainingJobName": "t-002-bbb", "TrainingJobStatus": "Completed",
                                      "TunedHyperParameters": TRIALS[1][3], "CreationTime": 1700000000}
            return self._answer(job)
        self._forward()

    def _list_training_jobs(self, query: dict) -> None:
        """moto's list, with the jobs in ``server.running`` in progress and those in
        ``server.warm`` keeping a warm pool, filtered as SageMaker filters it."""
        wanted = {key: query.pop(key) for key in ("StatusEquals", "WarmPoolStatusEquals") if key in query}
        status, _, body = self._relay(json.dumps(query).encode())
        page = json.loads(body)
        if status == 200:
            jobs = page["TrainingJobSummaries"]
            for job in jobs:
                if job["TrainingJobName"] in self.server.running:
                    job["TrainingJobStatus"] = "InProgress"
                if job["TrainingJobName"] in self.server.warm:
                    job["WarmPoolStatus"] = {"Status": "Available",
                                             "ResourceRetainedBillableTimeInSeconds": 60}
            status_is = wanted.get("StatusEquals")
            pool_is = wanted.get("WarmPoolStatusEquals")
            page["TrainingJobSummaries"] = [
                job for job in jobs if status_is in (None, job["TrainingJobStatus"])
                and pool_is in (None, job.get("WarmPoolStatus", {}).get("Status"))]
        self._answer(page, status)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _relay(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = urllib.parse.urlsplit(self.server.upstream)
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()

    def _forward(self) -> None:
        status, headers, body = self._relay(self._body() if self.command in ("POST", "PUT") else b"")
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer(self, data: dict, status: int = 200) -> None:
        body = json.dumps(data, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def sagemaker(recording, aws, tmp_path):
    """(dogctl runner, work folder): AWS through the tuning proxy, data uploaded as channels."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SageMakerProxy)
    server.upstream, server.describes, server.stops, server.running = recording, 0, [], set()
    server.warm = set()
    server.finished = {}  # job name -> fields its DescribeTrainingJob answer gets (metrics, rules)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    work = tmp_path / "work"
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy, "DOGCTL_POLL_SECONDS": "0.05", "DOGCTL_BUCKET": BUCKET,
           "DOGCTL_ROLE": ROLE, "DOGCTL_IMAGE": IMAGE}

    def dogctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "dogctl"), "--workdir", str(work), *args], capture_output=True,
                              text=True, timeout=300, env=env)

    src = make_dataset(tmp_path / "src", classes=2, per_class=3, size=32)
    assert dogctl("data", "--source", str(src), "--sagemaker").returncode == 0
    dogctl.server = server
    yield dogctl, work
    server.shutdown()
