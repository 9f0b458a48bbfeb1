"""A tool the operator disabled is refused on every road, by name and with the setting that disables it."""

from __future__ import annotations

from gateway.backends.errors import ToolDisabled
from gateway.backends.invocation import CallNext, Invocation, Result
from gateway.backends.tool_rules import ToolRules


class ToolPolicy:
    def __init__(self, rules: ToolRules) -> None:
        self._rules = rules

    async def __call__(self, invocation: Invocation, call_next: CallNext) -> Result:
        tool = invocation.tool
        if tool is not None and (reason := self._rules.disabled_by(invocation.server, tool)):
            raise ToolDisabled(f"tool '{tool}' of server '{invocation.server}' is disabled: {reason}. "
                               f"An operator can enable it in the console, with PATCH /tools, or in the config")
        return await call_next(invocation)
