"""The config `hookline serve` runs with in the storing cases.

Only what the case needs: the provider's plugin and one number that accepts the bench's requests
(both from the case's request builder, bench/signed_requests.py), the public URL the requests
were signed for, and logs at warning so one line per accepted webhook (info) does not become part
of what is measured.
"""

from __future__ import annotations

from pathlib import Path

from bench.signed_requests import RequestBuilder


def text(port: int, database_url: str, data_dir: Path, plugins_and_numbers: str) -> str:
    """The server, database and logging tables every bench config has, then the case's own."""
    return f"""[server]
host = "127.0.0.1"
port = {port}
public_url = "http://127.0.0.1:{port}"
data_dir = "{data_dir}"

[database]
url = "{database_url}"

[logging]
level = "warning"

{plugins_and_numbers}"""


def write(path: Path, port: int, database_url: str, builder: RequestBuilder) -> None:
    path.write_text(text(port, database_url, path.parent / "data", builder.number_toml()), encoding="utf-8")
