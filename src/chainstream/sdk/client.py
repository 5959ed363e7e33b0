"""HTTP client for the relay API, with rejections raised as RelayError carrying the relay's stable code."""

from __future__ import annotations

from typing import Any

import httpx

from chainstream.errors import RecoverableError


class RelayError(RecoverableError):
    """The relay refused a request; ``code`` is its machine-readable reason, ``state`` its view of the channel."""

    def __init__(self, status: int, code: str, message: str, state: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}", code=code)
        self.status = status
        self.state = state


class RelayClient:
    def __init__(self, base_url: str, *, timeout: float = 30.0, client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = client or httpx.Client(base_url=self.base_url, timeout=timeout)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/api/v1{path}", **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                error = body.get("error", {})
                raise RelayError(
                    response.status_code,
                    error.get("code", "http_error"),
                    error.get("message", response.text),
                    body.get("state"),
                )
            except ValueError:
                raise RelayError(response.status_code, "http_error", response.text) from None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self._request("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self._request("PUT", path, json=body)

    def info(self) -> dict[str, Any]:
        return self.get("/info")  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()
