"""dogctl: data, tuning, training and hosting, on SageMaker or locally."""
