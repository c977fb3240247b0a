"""Old path, kept as a re-export: the console script's entry point is now ``sam_core.cli.finetune:main``."""

from sam_core.cli.finetune import main  # noqa: F401
