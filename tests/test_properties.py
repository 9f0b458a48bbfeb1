"""Property tests: config parsing, name mapping, params and templates never fail in an unplanned way."""

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
        assert str(exc).startswith("prop.json: ") and "\n" not in str(exc).split(": ", 1)[0]
        return
    assert isinstance(config, GatewayConfig)
    for name, spec in config.mcpServers.items():
        assert check_server_name(name, config.gateway.separator) is None
        assert spec.kind in ("stdio", "streamable-http", "sse")


names = st.text(min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(names, names)
def test_exported_names_are_always_valid_and_deterministic(server, tool) -> None:
    exported = export_name(server, tool, "__")
    assert VALID_NAME.match(exported)
    assert exported == export_name(server, tool, "__")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(names, names), max_size=30))
def test_the_index_keeps_every_tool_under_a_unique_valid_name(pairs) -> None:
    index, collisions = build_index(pairs, "__")
    assert set(index.values()) == set(pairs)
    assert all(VALID_NAME.match(name) for name in index)
    assert len(collisions) <= len(pairs)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=50) | json_values.map(json.dumps))
def test_params_parse_to_an_object_or_a_clear_error(text) -> None:
    try:
        parsed = parse_object(text, "params")
    except ToolError as exc:
        assert str(exc).startswith("params ")
        return
    assert isinstance(parsed, dict)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40).map(lambda t: "{{ " + t + " }}") | st.text(max_size=40))
def test_templates_compile_and_render_or_fail_clearly(text) -> None:
    try:
        compiled = compile_value({"v": text}, "args", "step 's', ")
        compiled.render({"inputs": {}, "steps": {}})
    except TemplateProblem as exc:
        assert str(exc).startswith("step 's', field 'args.v'")
