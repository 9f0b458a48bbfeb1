"""Property tests: config parsing, name mapping, params and templates hold their contracts for any input."""

from __future__ import annotations

import json

from fastmcp.exceptions import ToolError
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError, GatewayConfig, parse_config
from gateway.control import parse_object
from gateway.names import VALID_NAME, build_index, check_server_name, export_name
from gateway.pipelines.templates import TemplateProblem, compile_value

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
server_fields = st.fixed_dictionaries({}, optional={
    "command": st.text(max_size=10) | st.integers(), "args": st.lists(st.text(max_size=5)) | st.text(),
    "env": st.dictionaries(st.text(max_size=5), st.text(max_size=12) | st.integers()),
    "url": st.sampled_from(["http://127.0.0.1:1/mcp", "https://x/sse", "ftp://x", "${URL}", ""]),
    "transport": st.sampled_from(["stdio", "http", "sse", "streamable-http", "bogus"]),
    "type": st.sampled_from(["sse", "http", None]), "timeout": st.floats() | st.text(max_size=3),
    "headers": st.dictionaries(st.text(max_size=5), st.text(max_size=12)), "disabled": st.booleans(),
    "extra_key": json_values})
configs = st.fixed_dictionaries({}, optional={
    "mcpServers": st.dictionaries(st.text(max_size=12), server_fields, max_size=3) | json_values,
    "gateway": st.fixed_dictionaries({}, optional={"call_timeout": st.floats() | st.integers(),
                                                   "separator": st.text(max_size=5)}) | json_values,
}) | json_values


@settings(max_examples=300, deadline=None)
@given(configs, st.dictionaries(st.sampled_from(["URL", "TOKEN"]), st.text(max_size=20)))
def test_config_parsing_gives_a_config_or_one_clear_error(raw, env) -> None:
    try:
        config = parse_config(raw, source="prop.json", env=env)
    except ConfigError as exc:
        # one line, naming the file first
        assert str(exc).startswith("prop.json: ") and "\n" not in str(exc)
        return
    assert isinstance(config, GatewayConfig)
    for name, spec in config.mcpServers.items():
        assert check_server_name(name, config.gateway.separator) is None
        # exactly one target, and the transport follows from it
        assert bool(spec.command) != bool(spec.url)
        assert (spec.kind == "stdio") == bool(spec.command)
        if not any("${" in v for v in env.values()):
            assert "${" not in json.dumps(spec.model_dump())  # every variable was expanded


names = st.text(min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(names, names)
def test_exported_names_are_always_valid_and_deterministic(server, tool) -> None:
    exported = export_name(server, tool, "__")
    assert VALID_NAME.match(exported)
    assert exported == export_name(server, tool, "__")
    natural = f"{server}__{tool}"
    assert (exported == natural) == bool(VALID_NAME.match(natural))  # only names that must change do


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(names, names), max_size=30, unique=True),
       st.sets(st.sampled_from(["list_servers", "call_backend", "a__b"])))
def test_the_index_keeps_every_tool_under_a_unique_valid_name(pairs, reserved) -> None:
    index, collisions = build_index(pairs, "__", reserved)
    assert sorted(index.values()) == sorted(pairs)  # every tool once: distinct names, nothing lost
    assert all(VALID_NAME.match(name) for name in index) and not set(index) & reserved
    # a tool leaves its natural name only when that name was taken, and each such rename is reported
    renamed = [(server, tool) for name, (server, tool) in index.items() if name != export_name(server, tool, "__")]
    assert len(collisions) == len(renamed)
    for server, tool in renamed:
        assert any(f"'{tool}' of server '{server}'" in message for message in collisions)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=50) | json_values.map(json.dumps))
def test_params_parse_to_an_object_or_a_clear_error(text) -> None:
    try:
        expected = json.loads(text) if text else {}
    except ValueError:
        expected = ValueError
    try:
        parsed = parse_object(text, "params")
    except ToolError as exc:
        if expected is ValueError:
            assert str(exc).startswith("params is not valid JSON")
        else:
            assert not isinstance(expected, dict) and str(exc).startswith("params must be a JSON object")
        return
    assert isinstance(expected, dict) and parsed == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40).map(lambda t: "{{ " + t + " }}") | st.text(max_size=40))
def test_templates_compile_and_render_or_fail_clearly(text) -> None:
    try:
        compiled = compile_value({"v": text}, "args", "step 's', ")
        rendered = compiled.render({"inputs": {}, "steps": {}})
    except TemplateProblem as exc:
        assert str(exc).startswith("step 's', field 'args.v'")
        return
    if "{{" not in text and "{%" not in text:  # plain text is data, never evaluated
        assert rendered == {"v": text} and not compiled.dynamic


@settings(max_examples=200, deadline=None)
@given(json_values, st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True))
def test_a_whole_expression_keeps_its_type_and_names_the_step_it_needs(value, step_id) -> None:
    compiled = compile_value("{{ steps." + step_id + ".result }}", "args", "")
    assert compiled.refs.steps == {step_id}
    assert compiled.render({"inputs": {}, "steps": {step_id: {"result": value}}}) == value
