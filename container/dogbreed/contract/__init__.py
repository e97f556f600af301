"""SageMaker's contracts in its own words: the /opt/ml layout, hyperparameters, metric lines, the
model artefact and a job's folders. Pure Python: nothing here imports torch, numpy or PIL."""
