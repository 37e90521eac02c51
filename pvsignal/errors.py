"""Domain errors. Each names the input at fault and its value; interfaces map them once."""


class PvsignalError(Exception):
    """Base of every error pvsignal raises on purpose."""


class InputError(PvsignalError, ValueError):
    """An input (file, column, option, record) is unusable; the message says which and why."""


class StaleOffsetsError(PvsignalError):
    """A batch was read from offsets another writer has since moved past (a consumer that
    lost its partitions in a rebalance): writing it would count records twice."""


class NotFoundError(PvsignalError, LookupError):
    """What the caller named does not exist (or is not theirs to see)."""


class StateConflictError(PvsignalError):
    """The request is valid but the thing it names is not in a state that allows it."""


class LeaseLostError(PvsignalError):
    """A detection shard wrote after another process took its lease (it is fenced off)."""
