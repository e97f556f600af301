"""SageMaker Debugger in the container: the smdebug hook, the profiler, the built-in rules evaluated
on the job's own tensors, and the HTML report.

smdebug reads its log level once, when it first makes its logger (on import): every module here
imports this package first, so this one line sets it for all of them (a user's value wins). The
same holds for protobuf's implementation: smdebug's generated ``_pb2`` modules build descriptors
directly, which protobuf 4 and later accept only in their pure-Python implementation (the image
sets it too, for users' scripts).
"""

import os

os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
