"""The config `hookline serve` runs with in the storing cases.

Only what the case needs: the Twilio plugin, one number that owns the fixture's `To` with a known
auth token, the public URL the requests were signed for, and logs at warning so one line per
accepted webhook (info) does not become part of what is measured.
"""

from __future__ import annotations

from pathlib import Path

from bench import signed_requests


def write(path: Path, port: int, auth_token: str, database_url: str) -> None:
    path.write_text(
        f"""[server]
host = "127.0.0.1"
port = {port}
public_url = "http://127.0.0.1:{port}"
data_dir = "{path.parent / 'data'}"

[database]
url = "{database_url}"

[logging]
level = "warning"

[plugins]
enabled = ["twilio"]

[[numbers]]
id = "bench"
provider = "twilio"
phone = "{signed_requests.our_phone()}"
[numbers.settings]
account_sid = "{signed_requests.account_sid()}"
auth_token = "{auth_token}"
""",
        encoding="utf-8",
    )
