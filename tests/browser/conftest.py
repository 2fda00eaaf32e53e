"""Fixtures of the browser tests: Debian's Chromium (installed when missing, if we may), one
headless browser and one `hookline serve` per module and backend, a fresh context per test at its
viewport; on a failure, a screenshot and the server's log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest

from tests.browser.support import ADMIN, ARTIFACTS, LAUNCH_ARGS, PASSWORD, BrowserPage, Console, ensure_chromium, serving_on


@pytest.fixture(scope="session")
def chromium(pytestconfig: pytest.Config) -> Path:
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    return ensure_chromium(capture.global_and_fixture_disabled if capture else nullcontext)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots: the named ones are overwritten by each run; failures' of earlier runs removed."""
    ARTIFACTS.mkdir(exist_ok=True)
    for stale in ARTIFACTS.glob("failed-*.png"):
        stale.unlink()
    return ARTIFACTS


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    setattr(item, f"report_{report.when}", report)  # fixtures' teardowns see how the test went
    return report


def call_failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is None or report.failed


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-wide, so one Chromium serves a module's tests (a launch costs about a second)."""
    return "asyncio"


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=LAUNCH_ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def viewport(request: pytest.FixtureRequest) -> dict:
    """{"width", "height", "mobile"?}: parametrized by the tests."""
    return request.param


@pytest.fixture(scope="module")
def console_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """`hookline serve` in a subprocess on a free 127.0.0.1 port, for a module's tests on one backend
    (parametrized by them: "sqlite" or "postgres"): recorder and twilio enabled, `public_url` its
    own address (Twilio signatures are checked against it), an admin made by `hookline users
    create`, Twilio numbers sending to a local fake of Twilio's API."""
    from core.testing.database import emptied
    from tests.fake_twilio import running_fake_twilio
    from tests.helpers import write_config
    from tests.test_process import free_port, hookline

    backend = request.param
    directory = tmp_path_factory.mktemp(f"console-{backend}")
    if backend == "sqlite":
        database_url = f"sqlite://{directory}/hookline.sqlite3"
    else:
        database_url = request.getfixturevalue("postgres_url")  # migrated; fails under HOOKLINE_REQUIRE_POSTGRES=1
        if database_url is None:
            pytest.skip("PostgreSQL not reachable (set DATABASE_URL, or HOOKLINE_REQUIRE_POSTGRES=1 to fail)")
        emptied(database_url)
    port = free_port()
    config = write_config(directory, database_url, enabled=["recorder", "twilio"], modules=["tests.recording_provider"],
                          public_url=f"http://127.0.0.1:{port}")
    made = hookline("users", "create", ADMIN, "--admin", "--password-stdin", "--config", config, cwd=directory,
                    input=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    with running_fake_twilio({}) as twilio, serving_on(port, config, directory) as server:
        yield Console(server, twilio, backend)


@pytest.fixture
async def ui(browser, console_server: Console, viewport: dict, artifacts: Path,
             request: pytest.FixtureRequest) -> AsyncIterator[BrowserPage]:
    """A fresh context (no cookies) with one English page at `viewport`. Afterwards: nothing may
    have gone wrong in the page; on a failure, its screenshot and the server's log."""
    mobile = viewport.get("mobile", False)
    context = await browser.new_context(viewport={"width": viewport["width"], "height": viewport["height"]},
                                        is_mobile=mobile, has_touch=mobile, locale="en-US")
    try:
        watched = BrowserPage(await context.new_page()).watch()
        yield watched
        if call_failed(request):
            shot = artifacts / f"failed-{request.node.name.replace('[', '-').rstrip(']')}.png"
            try:
                await watched.page.screenshot(path=str(shot))
                print(f"screenshot of the failure: {shot} (page at {watched.page.url})")
            except Exception as exc:  # noqa: BLE001 - a report aid, never the failure itself
                print(f"no screenshot of the failure: {exc}")
            if watched.errors:
                print("went wrong in the browser:\n" + "\n".join(watched.errors))
            print(f"---- hookline serve log ({console_server.server.log}):\n{console_server.server.output()[-6000:]}")
        else:
            assert watched.errors == [], "went wrong in the browser:\n" + "\n".join(watched.errors)
    finally:
        await context.close()
