"""Director Studio entry point: ``python launch.py <command>`` (see ``python launch.py --help``)."""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

if __name__ == "__main__":
    from core.cli import main

    sys.exit(main())
