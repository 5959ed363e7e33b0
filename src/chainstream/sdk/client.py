"""HTTP client for the relay API, with rejections raised as RelayError carrying the relay's stable code."""

from __future__ import annotations

from typing import Any

import httpx

from chainstream.errors import RecoverableError


class RelayError(RecoverableError):
    """The relay refused a request; ``code`` is its machine-readable reason, ``state`` its view of the channel."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        state: dict[str, Any] | None = None,
        *,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}", code=code)
        self.status = status
        self.state = state
        self.body = body or {}  # the whole error reply (a 402's `payment` block)


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
                    body=body,
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

    def upload(self, path: str, body: Any, headers: dict[str, str]) -> Any:
        """PUT a raw body (bytes or an iterator of chunks, streamed) with `headers`; the JSON reply."""
        return self._request("PUT", path, content=body, headers=headers, timeout=None)

    def fetch(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        """GET raw bytes (audio); a refusal (402 included) is a RelayError with the relay's code and body."""
        response = self.http.get(f"/api/v1{path}", headers=headers or {})
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                raise RelayError(response.status_code, "http_error", response.text) from None
            error = body.get("error", {})
            raise RelayError(response.status_code, error.get("code", "http_error"), error.get("message", ""), body=body)
        return response.content

    def info(self) -> dict[str, Any]:
        return self.get("/info")  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
