"""The pages people open in a browser work under the Content-Security-Policy.

A real Chromium (Debian's, driven by Playwright) loads each page from a real
server and the test fails on any CSP violation, script error, failed request or
asset answered with an error, and checks that each page actually rendered: a
blocked script would leave Swagger UI or Redoc empty without any 4xx.
"""

import os
import secrets
import shutil
from dataclasses import dataclass, field

import pytest

from tests.servers import (
    HIGH_RATE_LIMITS,
    ServerProcess,
    manage,
    prepare_database,
    server_env,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IN_CI = bool(os.environ.get("CI")) or os.environ.get("REQUIRE_SERVICES") == "1"

pytestmark = pytest.mark.slow

# (path, a selector that exists only once the page has rendered)
PAGES = [
    ("/", "a[href='/api/docs/']"),
    ("/admin/", "#content-main"),
    ("/admin/stores/store/", "#changelist"),
    ("/admin/stores/document/add/", "form"),
    ("/api/stores/", ".response-info"),  # the browsable API
    ("/api/docs/", ".swagger-ui .opblock"),  # Swagger UI drew the operations
    ("/api/redoc/", "[data-section-id]"),  # Redoc drew the sections
]


# Redoc's sidebar always shows Redocly's logo from their CDN (no option turns it
# off); the policy blocks it by design, Redoc hides the image, nothing else
# leaves the page.
BLOCKED_BY_DESIGN = ("https://cdn.redoc.ly/redoc/logo-mini.svg",)


@dataclass
class Problems:
    items: list[str] = field(default_factory=list)

    def watch(self, page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.items.append(f"page error: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message) -> None:
        if any(url in message.text for url in BLOCKED_BY_DESIGN):
            return
        if message.type == "error" or "Content Security Policy" in message.text:
            self.items.append(f"console {message.type}: {message.text}")

    def _failed(self, request) -> None:
        if request.url not in BLOCKED_BY_DESIGN:
            self.items.append(f"request failed: {request.url} ({request.failure})")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.items.append(f"{response.status}: {response.url}")


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail("chromium is missing in CI (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    env = server_env(folder, **HIGH_RATE_LIMITS)
    prepare_database(env)
    password = secrets.token_urlsafe(16)
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"User.objects.create_superuser('staff', 'staff@example.com', {password!r})",
    )
    manage(env, "quickstart", "--base-url", "http://127.0.0.1")
    with ServerProcess(env) as process:
        yield process, password


@pytest.fixture(scope="module")
def staff_page(browser, server):
    process, password = server
    context = browser.new_context(base_url=process.base_url)
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


@pytest.mark.parametrize(("path", "rendered"), PAGES)
def test_the_page_renders_with_no_csp_violation(staff_page, path, rendered):
    problems = Problems()
    problems.watch(staff_page)

    response = staff_page.goto(path, wait_until="networkidle")
    staff_page.wait_for_selector(rendered, timeout=15_000)

    assert response.status == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert problems.items == []


def test_an_inline_script_would_be_reported(staff_page):
    """The watch is not blind: a script the policy blocks is caught."""
    problems = Problems()
    problems.watch(staff_page)
    staff_page.goto("/api/stores/", wait_until="networkidle")

    staff_page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.ran = true'; document.body.appendChild(s); }"
    )
    staff_page.wait_for_timeout(200)

    assert staff_page.evaluate("() => window.ran === true") is False
    assert any("Content Security Policy" in item for item in problems.items)


def test_logging_out_of_the_browsable_api_works_without_script(staff_page):
    # Last in this module: it ends the staff session the other tests share.
    staff_page.goto("/api/stores/", wait_until="networkidle")

    staff_page.click("button:has-text('Log out')")
    staff_page.wait_for_load_state("networkidle")

    assert staff_page.goto("/api/stores/").status == 401
