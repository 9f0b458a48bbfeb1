"""The interceptors every backend request passes, assembled in one place from the config.

An interceptor is `async def (invocation, call_next) -> result`: it may look at or change the
invocation, call `call_next` (or not), and look at or change the result or the error. The first in
the list is outermost. Later ones (tool policy, rate limits, audit, metrics) go in this list; the
roads into a backend never change for them.
"""

from __future__ import annotations

from gateway.backends.invocation import Interceptor
from gateway.backends.tool_rules import ToolRules
from gateway.config import GatewaySettings
from gateway.interceptors.input_required import InputRequired
from gateway.interceptors.observe import Observe
from gateway.interceptors.profile_scope import ProfileScope
from gateway.interceptors.redaction import Redaction
from gateway.interceptors.size_limit import SizeLimit
from gateway.interceptors.tool_policy import ToolPolicy
from gateway.policy import Redactor
from gateway.profiles import Profiles


def build_interceptors(settings: GatewaySettings, redact: Redactor, rules: ToolRules,
                       observe: Observe | None = None, profiles: Profiles | None = None) -> list[Interceptor]:
    # Observing (audit, metrics) is outermost, so that every refusal is recorded, and it sees
    # error texts after redaction has covered them, whichever interceptor made them; each retry
    # with a client's answers passes the size limit again.
    chain: list[Interceptor] = [ToolPolicy(rules), Redaction(redact), InputRequired(), SizeLimit(settings.max_result_bytes)]
    # A profile's bounds come before the tool policy: outside them a tool is unknown, not disabled.
    if profiles is not None and (profiles.names() or profiles.default):
        chain.insert(0, ProfileScope(profiles, lambda server, tool: rules.exported(server, tool, settings.separator)))
    if observe is not None and (settings.audit.enabled or settings.metrics):
        chain.insert(0, observe)
    return chain
