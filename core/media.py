"""The media store: files on local disk, served to providers at signed, expiring URLs.

Providers fetch what we send from `GET /media/{key}?expires=…&signature=…` under `public_url`;
without a valid, unexpired signature the answer is 404, so stored files are not enumerable.
Keys are content hashes: the same file stored twice is one file.
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import re
import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from core.keys import SecretKey

_KEY = re.compile(r"^[0-9a-f]{64}(\.[a-z0-9]{1,8})?$")


class MediaStore:
    def __init__(self, directory: Path, secret_key: SecretKey, public_url: str, ttl_seconds: int) -> None:
        self.directory = directory
        self._secret_key = secret_key
        self.public_url = public_url
        self.ttl_seconds = ttl_seconds

    def save(self, data: bytes, content_type: str | None = None, filename: str | None = None) -> str:
        """Store bytes; return their key (sha256 + an extension that keeps the content type)."""
        extension = _extension(content_type, filename)
        key = hashlib.sha256(data).hexdigest() + extension
        path = self.directory / key
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(path.suffix + ".part")
            partial.write_bytes(data)
            partial.replace(path)  # readers never see a half-written file
        return key

    def path(self, key: str) -> Path | None:
        if not _KEY.match(key):
            return None
        path = self.directory / key
        return path if path.is_file() else None

    def read(self, key: str) -> bytes:
        path = self.path(key)
        if path is None:
            raise FileNotFoundError(key)
        return path.read_bytes()

    def signed_url(self, key: str, ttl_seconds: int | None = None) -> str:
        expires = int(time.time()) + (ttl_seconds or self.ttl_seconds)
        return f"{self.public_url}/media/{key}?expires={expires}&signature={self._sign(key, expires)}"

    def _sign(self, key: str, expires: int) -> str:
        return hmac.new(self._secret_key.value, f"{key}:{expires}".encode(), hashlib.sha256).hexdigest()

    def is_valid(self, key: str, expires: str, signature: str) -> bool:
        if not (expires.isascii() and expires.isdigit()) or int(expires) < time.time():  # "²".isdigit() is true
            return False
        return hmac.compare_digest(signature, self._sign(key, int(expires)))

    async def endpoint(self, request: Request) -> Response:
        key = request.path_params["key"]
        query = request.query_params
        path = self.path(key)
        if path is None or not self.is_valid(key, query.get("expires", ""), query.get("signature", "")):
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path, media_type=mimetypes.guess_type(key)[0] or "application/octet-stream")


def _extension(content_type: str | None, filename: str | None) -> str:
    if filename and "." in filename:
        candidate = "." + filename.rsplit(".", 1)[1].lower()
        if re.fullmatch(r"\.[a-z0-9]{1,8}", candidate):
            return candidate
    guessed = mimetypes.guess_extension((content_type or "").split(";", 1)[0].strip()) if content_type else None
    return guessed or ""
