"""A request reaches only what its profile offers: any other server or tool is unknown to it."""

from __future__ import annotations

from dataclasses import replace

from gateway.backends.errors import UnknownServer, UnknownTool
from gateway.backends.invocation import CallNext, Invocation, Result
from gateway.profiles import ExportedName, Profiles


class ProfileScope:
    def __init__(self, profiles: Profiles, exported: ExportedName) -> None:
        self._profiles = profiles
        self._exported = exported

    async def __call__(self, invocation: Invocation, call_next: CallNext) -> Result:
        view = self._profiles.view_for(invocation.caller)
        if view.name is None:
            return await call_next(invocation)
        if invocation.caller is not None and invocation.caller.profile != view.name:
            # the request came without a profile (stdio with --profile): the audit trail names it
            invocation.caller = replace(invocation.caller, profile=view.name)
        server, tool = invocation.server, invocation.tool
        if not view.offers_server(server):
            raise UnknownServer(f"unknown server '{server}'; list_servers shows the servers you can use")
        if tool is not None and not view.offers_tool(server, self._exported(server, tool)):
            raise UnknownTool(f"server '{server}' has no tool '{tool}'; list_servers shows the tools you can use")
        return await call_next(invocation)
