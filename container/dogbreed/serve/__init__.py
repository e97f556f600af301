"""``serve``: SageMaker's hosting contract (GET /ping, POST /invocations on port 8080);
``python -m dogbreed.serve``."""
