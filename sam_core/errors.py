"""Errors sam_core raises where a user's input cannot be used."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, unsafe, or does not fit the requested model."""
