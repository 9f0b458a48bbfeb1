"""The session state store the gateway gives FastMCP in place of py-key-value's."""

import time

import pytest
from fastmcp.server.server import StateValue

from gateway.session_state import SessionState


async def test_values_round_trip_as_copies_and_can_be_deleted() -> None:
    store = SessionState()
    rules = [{"enabled": False, "names": ["a"]}]
    await store.put(key="s1:_visibility_rules", value=StateValue(value=rules), ttl=60)
    rules.append({"changed": "after put"})
    got = await store.get(key="s1:_visibility_rules")
    assert got is not None and got.value == [{"enabled": False, "names": ["a"]}]
    got.value.clear()
    assert (await store.get(key="s1:_visibility_rules")).value == [{"enabled": False, "names": ["a"]}]
    assert await store.get(key="s2:_visibility_rules") is None
    assert await store.get(key="s1:_visibility_rules", collection="other") is None
    assert await store.delete(key="s1:_visibility_rules") is True
    assert await store.delete(key="s1:_visibility_rules") is False
    assert await store.get(key="s1:_visibility_rules") is None


async def test_entries_expire_after_their_ttl() -> None:
    store = SessionState()
    await store.put(key="k", value=StateValue(value=1), ttl=0.05)
    await store.put(key="forever", value=StateValue(value=2))
    deadline = time.monotonic() + 5
    while await store.get(key="k") is not None:
        assert time.monotonic() < deadline, "entry did not expire"
        time.sleep(0.01)
    assert (await store.get(key="forever")).value == 2


async def test_a_value_that_is_not_json_is_refused() -> None:
    store = SessionState()
    # FastMCP turns this ValueError into its "not serializable" TypeError for set_state
    with pytest.raises(ValueError, match="(?i)serializ"):
        await store.put(key="k", value=StateValue(value=object()))
    assert await store.get(key="k") is None
