"""Code that runs *inside* the images, apart from the host code that drives them.

`probe.py` is fed to an image's own interpreter on stdin (`python - COMMAND ...`): it is
never copied into an image, depends only on the standard library (and what the image
installed), and stays compatible with Python 3.9, the oldest micro in the matrix
(`tests/e2e/test_inside.py` compiles and runs it under bullseye's 3.9.2).
"""

from __future__ import annotations

from pathlib import Path

PROBE_SOURCE = (Path(__file__).resolve().parent / "probe.py").read_text(encoding="utf-8")
# Staged as sitecustomize.py into the test containers of a cell run under QEMU emulation.
QEMU_SHIM_SOURCE = (Path(__file__).resolve().parent / "qemu_shim.py").read_text(encoding="utf-8")
