"""Secrets never leave through a backend request: error texts and relayed log messages are redacted."""

from __future__ import annotations

from gateway.backends.errors import BackendError
from gateway.backends.invocation import CallNext, Invocation, LogMessage, LogSink, Result
from gateway.policy import Redactor


class Redaction:
    def __init__(self, redact: Redactor) -> None:
        self._redact = redact

    async def __call__(self, invocation: Invocation, call_next: CallNext) -> Result:
        if invocation.log is not None:
            invocation.log = self._redacting(invocation.log)
        try:
            return await call_next(invocation)
        except BackendError as exc:
            exc.args = (self._redact(str(exc)),)
            raise

    def _redacting(self, sink: LogSink) -> LogSink:
        async def log(message: LogMessage) -> None:
            if self._redact.secrets:
                message = message.model_copy(update={"data": self._redact.value(message.data),
                                                      "logger": message.logger and self._redact(message.logger)})
            await sink(message)

        return log
