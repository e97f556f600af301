"""serve's admission: real threads and real waits, no stand-ins."""

from __future__ import annotations

import threading
import time

import pytest

from dogbreed.serve.admission import Admission, Busy


def test_requests_over_capacity_are_refused_at_once():
    admission = Admission(capacity=2, working=1, timeout=5)
    with admission.request(), admission.request():
        started = time.monotonic()
        with pytest.raises(Busy, match="already has 2 requests in progress"), admission.request():
            pass
        assert time.monotonic() - started < 0.1
    with admission.request():  # released: admitted again
        pass


def test_a_request_waits_its_turn_until_its_deadline():
    admission = Admission(capacity=3, working=1, timeout=0.3)
    holding, release = threading.Event(), threading.Event()

    def worker() -> None:
        with admission.request() as deadline, admission.work(deadline):
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=worker)
    thread.start()
    assert holding.wait(5), "the first request never got its working slot"
    started = time.monotonic()
    waited = r"waited 0.3s \(SAGEMAKER_MODEL_SERVER_TIMEOUT\) without its turn"
    with pytest.raises(Busy, match=waited), admission.request() as deadline, admission.work(deadline):
        pass
    assert 0.25 < time.monotonic() - started < 1.0
    release.set()
    thread.join()
    with admission.request() as deadline, admission.work(deadline):  # its turn now
        deadline.check()


def test_a_deadline_past_is_busy():
    admission = Admission(capacity=1, working=1, timeout=0.05)
    with admission.request() as deadline:
        time.sleep(0.1)
        with pytest.raises(Busy, match="took longer than SAGEMAKER_MODEL_SERVER_TIMEOUT=0.05s"):
            deadline.check()


def test_decodes_wait_for_the_pixel_budget_and_a_big_photo_goes_alone():
    admission = Admission(capacity=4, working=4, timeout=0.3, decode_pixels=100)
    budget = admission.pixels
    holding, release = threading.Event(), threading.Event()

    def decoding(pixels: int) -> None:
        with admission.request() as deadline, budget.hold(pixels, deadline):
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=decoding, args=(60,))
    thread.start()
    assert holding.wait(5)
    with admission.request() as deadline, budget.hold(40, deadline):  # fits beside it
        assert budget.held == 100
    started = time.monotonic()
    with pytest.raises(Busy, match="for memory to decode its photos"), admission.request() as deadline, \
            budget.hold(41, deadline):
        pass
    assert 0.25 < time.monotonic() - started < 1.0 and budget.held == 60
    release.set()
    thread.join()
    with admission.request() as deadline, budget.hold(1000, deadline):  # over the budget: alone
        assert budget.held == 1000
    assert budget.held == 0


def test_a_drain_takes_a_spare_slot_or_none_and_counts_against_capacity():
    admission = Admission(capacity=2, working=1, timeout=5)
    with admission.request(), admission.spare() as spared:
        assert spared
        with pytest.raises(Busy), admission.request():  # the drain holds the second slot
            pass
        with admission.spare() as again:
            assert not again  # none left: the body is not dropped by this thread
    with admission.request(), admission.request():
        pass  # every slot given back
