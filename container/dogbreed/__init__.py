"""Dog-breed classifier for SageMaker's bring-your-own-container contracts."""

__version__ = "0.1.0"
