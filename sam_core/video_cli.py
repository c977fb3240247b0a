"""Old path, kept as a re-export: the console script's entry point is now ``sam_core.cli.video:main``."""

from sam_core.cli.video import main  # noqa: F401
