"""The operator's web console in a real browser: Playwright drives the system's Chromium against the
real `gateway` command, and a real MCP client sees what the operator changed.

Only the system browser is used (`./setup.sh --with-browser` installs Debian's chromium); nothing
downloads one. The tests take the README's screenshots, into $GATEWAY_SCREENSHOTS when it is set.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from fastmcp import Client
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect

from conftest import backend_spec, catalog_entry, http_gateway, settled, write_config

CHROMIUM = "/usr/bin/chromium"
ADMIN, CLIENT = "admin-ui-tok-3f9a", "client-ui-tok-81c2"
WAIT = 30_000  # ms: the longest any one wait in the browser may take (a slow, shared 2-core machine)
expect.set_options(timeout=WAIT)

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason=f"no browser at {CHROMIUM}: install Debian's chromium "
                                       f"(./setup.sh --with-browser)")

GREET = {
    "name": "greet",
    "description": "Echo a text, and add a number to 3.",
    "inputs": {"text": {"type": "string", "default": "hello"},
               "a": {"type": "integer", "default": 2, "description": "added to 3"}},
    "steps": {"say": {"server": "t", "tool": "echo", "args": {"text": "{{ inputs.text }}"}},
              "sum": {"server": "t", "tool": "add", "args": {"a": "{{ inputs.a }}", "b": 3}}},
    "output": {"said": "{{ steps.say.result }}", "sum": "{{ steps.sum.result }}"},
}
BROKEN = {"name": "broken", "steps": {"x": {"server": "nowhere", "tool": "echo", "args": {"text": "x"}}}}


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("GATEWAY_SCREENSHOTS") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
async def gateway(tmp_path: Path, mark: str) -> AsyncIterator[str]:
    """The real gateway over streamable HTTP with an operator token and a client token; its MCP URL."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "greet.yaml").write_text(yaml.safe_dump(GREET, sort_keys=False))
    (pipelines / "broken.yaml").write_text(yaml.safe_dump(BROKEN, sort_keys=False))
    config = write_config(tmp_path / "config.json", {"t": backend_spec(mark)})
    async with http_gateway(config, mark, "streamable-http", "--admin-token", ADMIN, "--auth-token", CLIENT,
                            "--pipelines", str(pipelines)) as (url, _proc):
        async with Client(url, auth=CLIENT, timeout=60) as client:
            await settled(client)  # the backend is ready: its tools are listed
        yield url


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(WAIT)
    opened = await context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.on("console", lambda message: problems.append(message.text)
              if message.type == "error" and "Content Security Policy" in message.text else None)
    try:
        yield opened
        assert not problems, f"script errors or CSP violations in the page: {problems}"
    finally:
        await context.close()


def base(url: str) -> str:
    return url.removesuffix("/mcp")


async def log_in(page: Page, url: str, token: str = ADMIN) -> None:
    await page.goto(base(url) + "/ui/login")
    await page.fill("#token", token)
    await page.click("form[action='/ui/login'] button[type=submit]")
    if token == ADMIN:
        await page.wait_for_url("**/ui/servers", timeout=WAIT)


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def listed(client: Client) -> set[str]:
    return {tool.name for tool in await client.list_tools()}


async def test_login_refuses_wrong_and_client_tokens_and_admits_the_operator(
        gateway: str, page: Page, shots: Path) -> None:
    await page.goto(base(gateway) + "/ui/servers")
    await page.wait_for_url("**/ui/login")  # no session: the console sends the browser to log in

    for token, status, words in (("not-a-token", 401, "wrong token"),
                                 (CLIENT, 403, "this token may use MCP but not the console: log in with an "
                                               "operator (admin) token")):
        async with page.expect_response(lambda r: r.url.endswith("/ui/login") and r.request.method == "POST") as got:
            await log_in(page, gateway, token)
        assert (await got.value).status == status
        await expect(page.locator("#login-error")).to_have_text(words)
        assert token not in await page.content()  # the token is never echoed
        assert not await page.context.cookies()

    await log_in(page, gateway, ADMIN)
    row = page.locator("#servers-table tr[data-server='t']")
    await expect(row.locator(".status")).to_have_text("ready")
    await expect(page.locator("#summary")).to_contain_text("servers 1/1 ready")
    [cookie] = await page.context.cookies()
    assert cookie["name"] == "gateway_console" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/" and not cookie["secure"] and ADMIN not in cookie["value"]
    assert ADMIN not in await page.content()
    await page.screenshot(path=str(shots / "servers.png"), full_page=True)

    await page.click("#servers-table a:text-is('t')")  # the details: restarts and stderr
    await page.wait_for_url("**/ui/servers/t")
    await expect(page.locator("#server-detail dl")).to_contain_text("Restarts")
    await page.goto(base(gateway) + "/ui/servers/nowhere")
    await expect(page.locator("main .message.error")).to_contain_text("nowhere")

    await page.click("#logout")
    await page.wait_for_url("**/ui/login")
    await page.goto(base(gateway) + "/ui/tools")
    await page.wait_for_url("**/ui/login")  # the session is closed


async def test_a_tool_toggled_off_leaves_the_clients_list_and_comes_back(
        gateway: str, page: Page, shots: Path) -> None:
    await log_in(page, gateway)
    await page.goto(base(gateway) + "/ui/tools")
    await expect(page.locator("tr[data-tool='t__echo']")).to_have_count(1)
    search = page.locator("#tool-filters input[name=q]")
    await search.press_sequentially("return the text")  # typed: keyup, then the list follows
    rows = page.locator("#tools-results tr.tool")
    await expect(rows).to_have_count(1)
    await expect(page.locator("#tools-results .count")).to_contain_text("1 tool matching")
    assert parse_qs(urlsplit(page.url).query)["q"] == ["return the text"]  # in the address, for reloads
    await search.fill("")
    await expect(rows).not_to_have_count(1)

    echo = page.locator("tr[data-tool='t__echo']")
    toggle = echo.locator("button.toggle")
    async with Client(gateway, auth=CLIENT, timeout=60) as client:
        assert "t__echo" in await listed(client)
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-checked", "false")
        await expect(echo).to_contain_text("an operator disabled it")
        assert "t__echo" not in await listed(client)
        await page.screenshot(path=str(shots / "tools.png"))

        await toggle.click()
        await expect(toggle).to_have_attribute("aria-checked", "true")
        assert "t__echo" in await listed(client)
        assert (await client.call_tool("t__echo", {"text": "back"})).data == "back"

        add = page.locator("tr[data-tool='t__add']")  # rename and describe, through the row's form
        await add.locator("summary").click()
        await add.locator("input[name=name]").fill("plus")
        await add.locator("textarea[name=description]").fill("Adds two numbers")
        await add.locator("form.edit button[type=submit]").click()
        plus = page.locator("tr[data-tool='plus']")
        await expect(plus).to_contain_text("Adds two numbers")
        tools = {tool.name: tool for tool in await client.list_tools()}
        assert "plus" in tools and "t__add" not in tools and tools["plus"].description == "Adds two numbers"

        await plus.locator("summary").click()  # a name the gateway refuses: its message, in the row
        await plus.locator("input[name=name]").fill("list_servers")
        await plus.locator("form.edit button[type=submit]").click()
        await expect(plus.locator(".message.error")).to_contain_text("the gateway's own tools")
        await expect(plus.locator("input[name=name]")).to_have_value("list_servers")  # the form is kept
        await plus.locator("input[name=name]").fill("")
        await plus.locator("textarea[name=description]").fill("")
        await plus.locator("form.edit button[type=submit]").click()  # empty fields: back to the defaults
        await expect(page.locator("tr[data-tool='t__add']")).to_have_count(1)
        assert "t__add" in await listed(client)


async def test_a_server_added_through_the_form_shows_in_the_table_and_refusals_show_their_reason(
        gateway: str, page: Page, shots: Path, mark: str) -> None:
    await log_in(page, gateway)
    form = page.locator("#add-server")
    await form.locator("input[name=name]").fill("fromform")
    entry = catalog_entry(mark)  # the testing backend, from the config's catalog
    await form.locator("input[name=template]").fill(entry["template"])
    await form.locator("textarea[name=env]").fill('{"GATEWAY_TEST_MARK": ')  # not JSON
    await form.locator("button[type=submit]").click()
    await expect(form.locator(".message.error")).to_contain_text("env: not valid JSON")

    await form.locator("textarea[name=env]").fill(json.dumps(entry["env"]))
    await form.locator("button[type=submit]").click()
    await expect(form.locator(".message.ok")).to_contain_text("registered 'fromform': ready")
    added = page.locator("#servers-table tr[data-server='fromform']")
    await expect(added.locator(".status")).to_have_text("ready")
    await expect(added).to_contain_text("runtime")
    await expect(page.locator("#summary")).to_contain_text("servers 2/2 ready")
    await expect(form.locator("input[name=name]")).to_have_value("")  # a fresh form for the next one
    await page.screenshot(path=str(shots / "servers-added.png"), full_page=True)

    own = gateway  # refused by policy: a gateway cannot be its own backend
    await form.locator("input[name=name]").fill("itself")
    await form.locator("input[name=url]").fill(own)
    await form.locator("button[type=submit]").click()
    refusal = form.locator(".message.error")
    await expect(refusal).to_contain_text("this gateway's own address")
    await expect(form.locator("input[name=url]")).to_have_value(own)  # the form is kept
    await expect(page.locator("#servers-table tr[data-server='itself']")).to_have_count(0)

    await form.locator("input[name=url]").fill("")
    await form.locator("input[name=name]").fill("other")
    await form.locator("input[name=template]").fill("no-such-template")
    await form.locator("textarea[name=env]").fill("")
    await form.locator("button[type=submit]").click()
    await expect(refusal).to_contain_text("unknown template 'no-such-template'")

    page.once("dialog", accept)  # hx-confirm asks first
    await added.locator("button.danger").click()
    await expect(page.locator("#servers-table .message.ok")).to_contain_text("removed 'fromform'")
    await expect(added).to_have_count(0)


async def test_hundreds_of_tools_page_and_search(tmp_path: Path, mark: str, page: Page) -> None:
    servers = {f"s{i}": backend_spec(mark) for i in range(7)}  # 7 × 30 tools
    config = write_config(tmp_path / "config.json", servers)
    async with http_gateway(config, mark, "streamable-http", "--admin-token", ADMIN) as (url, _proc):
        async with Client(url, auth=ADMIN, timeout=60) as client:
            await settled(client)
            total = len([name for name in await listed(client) if "__" in name])
        assert total >= 200
        await log_in(page, url)
        await page.goto(base(url) + "/ui/tools")
        rows = page.locator("#tools-results tr.tool")
        await expect(rows).to_have_count(50)
        pages = -(-total // 50)
        await expect(page.locator("#tools-results .count")).to_contain_text(f"{total} tools; 1–50 shown, page 1 of {pages}")
        await page.locator(".pager a", has_text=re.compile(f"^{pages}$")).click()  # the last page
        await expect(page.locator(".pager .current")).to_have_text(str(pages))
        await expect(rows).to_have_count(total - 50 * (pages - 1))
        assert parse_qs(urlsplit(page.url).query)["page"] == [str(pages)]
        await page.select_option("#tool-filters select[name=server]", "s3")  # back to page 1, one server
        await expect(page.locator("#tools-results .count")).to_contain_text(f"{total // 7} tools on s3")
        await expect(rows).to_have_count(total // 7)
        await page.locator("#tool-filters input[name=q]").press_sequentially("silent")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("s3__audio")


async def test_calls_appear_live_without_a_reload(gateway: str, page: Page, shots: Path) -> None:
    await log_in(page, gateway)
    await page.goto(base(gateway) + "/ui/calls")
    await page.evaluate("window.notReloaded = true")
    rows = page.locator("#call-rows tr.call")
    async with Client(gateway, auth=CLIENT, timeout=60) as client:
        await client.call_tool("t__echo", {"text": "watched live"})
        failed = await client.call_tool("t__fail", {"message": "on purpose"}, raise_on_error=False)
        assert failed.is_error
    echo = rows.filter(has=page.locator("td code", has_text=re.compile(r"^echo$|^t__echo$")))
    await expect(echo.first).to_be_visible()  # the page polls its rows every second
    await expect(echo.first.locator(".status")).to_have_text("ok")
    fail = rows.filter(has=page.locator("td code", has_text=re.compile(r"^fail$|^t__fail$")))
    await expect(fail.first.locator(".status")).not_to_have_text("ok")
    assert await page.evaluate("window.notReloaded === true")
    await expect(page.locator("#summary")).to_contain_text(re.compile(r"\b[1-9]\d* in all"))  # counts follow too
    await page.screenshot(path=str(shots / "calls.png"), full_page=True)

    await page.select_option("#call-filters select[name=status]", "ok")  # the filter: only ok calls
    await expect(fail).to_have_count(0)
    await expect(echo.first).to_be_visible()
    assert parse_qs(urlsplit(page.url).query)["status"] == ["ok"]
    outcomes = set(await rows.locator(".status").all_inner_texts())
    assert outcomes == {"ok"}, outcomes


async def test_a_pipeline_runs_from_its_form_and_shows_each_step(gateway: str, page: Page, shots: Path) -> None:
    await log_in(page, gateway)
    await page.goto(base(gateway) + "/ui/pipelines")
    broken = page.locator("section[data-pipeline='broken']")
    await expect(broken.locator(".status")).to_have_text("invalid")
    await expect(broken.locator(".problems")).to_contain_text("nowhere")
    await expect(broken.locator("form")).to_have_count(0)

    greet = page.locator("section[data-pipeline='greet']")
    await expect(greet.locator("h2 .status")).to_have_text("valid")
    await greet.locator("input[name='in.a']").fill("four")  # not an integer: said so, nothing runs
    await greet.locator("button[type=submit]").click()
    await expect(greet.locator(".report .message.error")).to_contain_text("input 'a' must be an integer")

    await greet.locator("input[name='in.text']").fill("from the form")
    await greet.locator("input[name='in.a']").fill("4")
    await greet.locator("button[type=submit]").click()
    report = greet.locator(".report .run-report")
    await expect(report.locator("#run-status")).to_have_text("ok")
    steps = report.locator("tr.step")
    await expect(steps).to_have_count(2)
    await expect(report.locator("tr.step[data-step='say'] .status")).to_have_text("ok")
    await expect(report.locator("tr.step[data-step='say']")).to_contain_text("from the form")
    await expect(report.locator("tr.step[data-step='sum']")).to_contain_text("7")
    await expect(report.locator("pre.output")).to_contain_text('"said": "from the form"')
    await page.screenshot(path=str(shots / "pipeline-run.png"), full_page=True)
