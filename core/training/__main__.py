"""``python -m core.training STAGE``: see :mod:`core.training.cli`."""

from core.training.cli import main

raise SystemExit(main())
