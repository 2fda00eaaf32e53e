"""Holds every /api answer a test client sees to the app's OpenAPI document.

`tests.helpers.started` hooks `Contract.check` into its client, so each API test is also a test
of the document: an answer with a status the operation does not list, or a JSON body its schema
does not allow (an undocumented field, a wrong type, a missing required one), fails the test that
got it. `seen` records (operationId, status) pairs for the coverage check in test_api_contract.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema

API_PREFIX = "/api"


class Contract:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.seen: set[tuple[str, int]] = set()
        self._operations: list[tuple[str, re.Pattern[str], dict[str, Any]]] = []
        for path, methods in document["paths"].items():
            pattern = re.compile("^" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(path)) + "$")
            for method, operation in methods.items():
                self._operations.append((method.upper(), pattern, operation))
        # Literal paths before templated ones: /whatsapp-numbers/x/qrcode is not .../{provider}/configure.
        self._operations.sort(key=lambda entry: entry[1].pattern.count("[^/]+"))

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        for candidate, pattern, operation in self._operations:
            if candidate == method and pattern.match(path):
                return operation
        return None

    def validate(self, schema: dict[str, Any], body: Any, where: str) -> None:
        wrapped = {**schema, "components": self.document["components"]}
        errors = sorted(jsonschema.Draft202012Validator(wrapped).iter_errors(body), key=lambda e: list(e.path))
        if errors:
            problems = "; ".join(f"{'/'.join(map(str, e.path)) or '(body)'}: {e.message}" for e in errors[:5])
            raise AssertionError(f"{where} does not match the OpenAPI document: {problems}")

    async def check(self, response: httpx.Response) -> None:
        request = response.request
        path = request.url.path
        if not path.startswith(API_PREFIX + "/"):
            return
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        method = request.method
        operation = self.operation(method, path)
        where = f"{method} {path} → {response.status_code}"
        if operation is None:  # an unknown route or method: still the uniform error body
            if method != "HEAD":
                await response.aread()
                self.validate({"$ref": "#/components/schemas/Error"}, response.json(), where)
            return
        self.seen.add((operation["operationId"], response.status_code))
        documented = operation["responses"].get(str(response.status_code))
        assert documented is not None, f"{where}: status not in the OpenAPI document ({sorted(operation['responses'])})"
        content = documented.get("content", {})
        if not content:
            assert not response.headers.get("content-length", "0").strip("0"), f"{where}: a body where none is documented"
            return
        assert content_type in content, f"{where}: content type {content_type!r}, documented {sorted(content)}"
        if content_type == "application/json" and method != "HEAD":
            await response.aread()
            self.validate(content[content_type]["schema"], json.loads(response.content), where)


__all__ = ["Contract"]
