"""Helpers of the web app's tests: a TestClient that talks to the app as its own page does."""

from __future__ import annotations

import pytest

BASE_URL = "http://127.0.0.1:8000"  # a Host the app accepts (its default bound address)


@pytest.fixture(scope="session")
def page_client():
    """``page_client(app)``: a TestClient on the app's own address that sends the token read from the page."""
    pytest.importorskip("fastapi")  # the serve extra, which CI installs
    from fastapi.testclient import TestClient

    from sam_core.serve.security import TOKEN_HEADER, page_token

    def make(app):
        client = TestClient(app, base_url=BASE_URL)
        client.headers[TOKEN_HEADER] = page_token(client.get("/").text)
        return client

    return make
