"""The one exception type users see: a message that says what is wrong and how to fix it."""


class HIRError(Exception):
    """Bad input or a broken environment. The CLI prints it as one line, without a traceback."""
