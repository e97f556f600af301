"""SageMaker Debugger in the container: the smdebug hook, the profiler, the built-in rules evaluated
on the job's own tensors, and the HTML report.

smdebug reads its log level once, when it first makes its logger (on import): every module here
imports this package first, so this one line sets it for all of them (a user's value wins).
"""

import os

os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")
