"""Old path, kept as a re-export: the console script's entry point is now ``sam_core.cli.serve:main``."""

from sam_core.cli.serve import main  # noqa: F401
