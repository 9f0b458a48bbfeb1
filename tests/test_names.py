"""The naming scheme for re-exported components."""

from __future__ import annotations

from gateway.names import VALID_NAME, build_index, check_server_name, export_name


def test_plain_names_are_server_separator_tool() -> None:
    assert export_name("weather", "get_alerts", "__") == "weather__get_alerts"


def test_invalid_and_long_names_become_valid_deterministic_and_distinct() -> None:
    dotted = export_name("fs", "read.file", "__")
    assert VALID_NAME.match(dotted) and dotted.startswith("fs__read_file-")
    assert dotted != export_name("fs", "read_file", "__")
    long_name = "x" * 100
    shortened = export_name("server", long_name, "__")
    assert len(shortened) == 64 and VALID_NAME.match(shortened)
    assert shortened == export_name("server", long_name, "__")
    assert shortened != export_name("server", long_name + "y", "__")
    assert VALID_NAME.match(export_name("s", "ünïcödé tool", "__"))


def test_collisions_are_resolved_and_reported_never_dropped() -> None:
    index, collisions = build_index([("a", "b__c"), ("a__b", "c")], "__")
    assert len(index) == 2 and set(index.values()) == {("a", "b__c"), ("a__b", "c")}
    assert len(collisions) == 1 and "a__b__c" in collisions[0]
    index, collisions = build_index([("list", "servers")], "_", reserved={"list_servers"})
    assert "list_servers" not in index and collisions


def test_server_names() -> None:
    assert check_server_name("my-db_2", "__") is None
    assert check_server_name("", "__")
    assert check_server_name("has space", "__")
    assert check_server_name("../etc", "__")
    assert check_server_name("a" * 41, "__")
    assert check_server_name("a__b", "__")
    assert check_server_name("db\n", "__")  # a trailing newline is no name character either
    assert not VALID_NAME.match("tool\n")
