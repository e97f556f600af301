"""The local endpoint's server environment: the caller's, less its secrets."""

from __future__ import annotations

from orchestration.local.hosting import server_environment


def test_a_local_server_never_gets_the_callers_credentials():
    env = {"PATH": "/usr/bin", "HOME": "/root", "DOGBREED_PRECISION": "int8", "OMP_NUM_THREADS": "2",
           "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t",
           "AWS_PROFILE": "prod", "aws_shared_credentials_file": "/x", "GITHUB_TOKEN": "g",
           "DB_PASSWORD": "p", "MY_SECRET": "m", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}
    assert server_environment(env) == {"PATH": "/usr/bin", "HOME": "/root", "DOGBREED_PRECISION": "int8",
                                       "OMP_NUM_THREADS": "2"}
