"""Build Ray head/worker/notebook images from a version matrix and prove parity end to end."""

__version__ = "0.1.0"
