"""Errors for bad input data: raised with a message that names the file and what is wrong."""


class DataError(ValueError):
    """Input data that cannot be used (missing directory, corrupt image, empty report, ...)."""
