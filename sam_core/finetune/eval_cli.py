"""Old path, kept as a re-export: the console script's entry point is now ``sam_core.cli.evaluate:main``."""

from sam_core.cli.evaluate import main  # noqa: F401
