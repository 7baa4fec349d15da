"""Director Studio entry point.

    python launch.py                       # the studio on http://127.0.0.1:7860
    python launch.py plan|graph|render|batch|eval ...  # the headless command line (python launch.py --help)
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

COMMANDS = {"plan", "graph", "render", "batch", "eval", "-h", "--help"}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        from core.cli import main
    else:
        from studio.app import main
    sys.exit(main(sys.argv[1:]))
