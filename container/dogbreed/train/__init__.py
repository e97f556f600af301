"""``train``: SageMaker's training contract (``docker run IMAGE train``); ``python -m dogbreed.train``."""
