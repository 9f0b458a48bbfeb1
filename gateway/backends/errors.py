"""What can go wrong on the way to a backend, as exceptions whose text is meant for the caller."""

from mcp import MCPError


class BackendError(Exception):
    """Any failure to reach or use a backend; str(exc) is the message shown to the client."""


class UnknownServer(BackendError):
    pass


class UnknownTool(BackendError):
    pass


class ToolDisabled(BackendError):
    """The operator does not offer this tool (config or console)."""


class InvalidParams(BackendError):
    pass


class CallTimeout(BackendError):
    pass


class BackendUnavailable(BackendError):
    """The backend is not connected (failed to start, died, or is reconnecting)."""


class RegistrationError(BackendError):
    status = 502  # for the console's HTTP answer: the server could not be started or reached


class BadRegistration(RegistrationError):
    status = 400  # the request itself is wrong: a bad name, say


class RegistrationRefused(RegistrationError):
    status = 403  # the policy does not allow it


class NameTaken(RegistrationError):
    status = 409


class StoreDown(RegistrationError):
    status = 503  # the shared store is unreachable: no change is made that other replicas would miss


class ResultTooLarge(BackendError):
    pass


class BackendRejected(BackendError):
    """The backend answered with a JSON-RPC error; `code` is its code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class GatewayBug(BackendError):
    """Something in the gateway itself went wrong; it is logged with its traceback."""


def describe_exception(exc: BaseException) -> str:
    """What went wrong on the way to a backend, in a few words (the root OS error when there is one)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:  # a task group's: its first real error
        exc = exc.exceptions[0]
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if isinstance(root, OSError) and root is not exc:
        exc = root
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, MCPError):
        return exc.error.message
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"command not executable: {exc.filename or exc}"
    text = str(exc) or type(exc).__name__
    return text.removeprefix("Client failed to connect: ")
