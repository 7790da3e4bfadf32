"""Entry point: `python -m harness`."""

import sys

try:
    from harness.cli import entry
except KeyboardInterrupt:  # Ctrl-C while the CLI's modules load: nothing was started
    print("\ninterrupted (exit 130)", file=sys.stderr)
    sys.exit(130)
entry()
