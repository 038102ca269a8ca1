"""A local tool stays local: opening every page asks no host but the dashboard's own server
(no favicon, font or script from the internet)."""
from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.e2e.conftest import wait_for_app

pytestmark = pytest.mark.e2e
PAGES = ["", "/build", "/train", "/sweep", "/monitor", "/runs", "/classify"]


def test_no_page_asks_any_host_but_its_own_server(server, page):
    own = urlparse(server["url"]).netloc
    outside: list[str] = []
    page.on("request", lambda request: outside.append(request.url)
            if urlparse(request.url).scheme in ("http", "https", "ws", "wss")
            and urlparse(request.url).netloc != own else None)
    for path in PAGES:
        page.goto(server["url"] + path)
        wait_for_app(page)
    page.reload()
    wait_for_app(page)
    assert outside == [], f"requests to other hosts: {sorted(set(outside))[:10]}"
