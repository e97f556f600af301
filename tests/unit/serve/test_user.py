"""Which user serve's workers run as (the real user database)."""

from __future__ import annotations

import pwd

import pytest

from dogbreed.serve.user import DEFAULT_USER, worker_user


def test_started_as_another_user_the_workers_stay_as_started():
    assert worker_user("nobody", euid=1000).uid is None


def test_started_as_root_the_workers_switch_to_the_user():
    nobody = pwd.getpwnam("nobody")
    user = worker_user("nobody", euid=0)
    assert (user.uid, user.gid) == (nobody.pw_uid, nobody.pw_gid)
    assert "nobody" in user.reason and "not root" in user.reason


def test_root_by_request_or_without_the_images_user_stays_root_and_says_so():
    assert worker_user("root", euid=0).uid is None
    try:
        pwd.getpwnam(DEFAULT_USER)
    except KeyError:  # outside the image
        missing = worker_user(DEFAULT_USER, euid=0)
        assert missing.uid is None and "no user 'dogbreed'" in missing.reason


def test_a_user_named_that_does_not_exist_is_an_error():
    with pytest.raises(ValueError, match="no such user"):
        worker_user("no-such-user-here", euid=0)
