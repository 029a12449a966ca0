"""Errors a person can act on: front ends print their message, never a traceback."""


class UserError(Exception):
    """Bad input or setup: the message says what is wrong and what to do."""


class ModelError(UserError):
    """A model file that is missing, corrupt or of another contract."""
