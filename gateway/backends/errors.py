"""What can go wrong on the way to a backend, as exceptions whose text is meant for the caller."""


class BackendError(Exception):
    """Any failure to reach or use a backend; str(exc) is the message shown to the client."""


class UnknownServer(BackendError):
    pass


class UnknownTool(BackendError):
    pass


class InvalidParams(BackendError):
    pass


class CallTimeout(BackendError):
    pass


class BackendUnavailable(BackendError):
    """The backend is not connected (failed to start, died, or is reconnecting)."""


class RegistrationError(BackendError):
    pass


class ResultTooLarge(BackendError):
    pass


class BackendRejected(BackendError):
    """The backend answered with a JSON-RPC error; `code` is its code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
