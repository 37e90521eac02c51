"""Domain errors. Each names the input at fault and its value; interfaces map them once."""


class PvsignalError(Exception):
    """Base of every error pvsignal raises on purpose."""


class InputError(PvsignalError, ValueError):
    """An input (file, column, option, record) is unusable; the message says which and why."""
