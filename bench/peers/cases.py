"""The peer cases: the same signed webhooks, under the same load, against what others would run.

Each peer is served from the peers' own venv (bench/peers/environment.py) on hookline's port —
the Twilio requests are signed over a URL that includes it, and one server runs at a time — and
loaded through `bench.cases._load` like the ceiling: any non-2xx fails the case, so a peer must
accept every signed request. Their rows are what hookline's rows for the same provider are
compared with (`CaseResult.peer`), so a peer has no ratio of its own (`compare_to=None`).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import rss, servers
from bench.cases import CaseResult, Load, _load, _log_problems, _ok_answers
from bench.peers import environment
from bench.signed_requests import MetaInbound

HERE = Path(__file__).resolve().parent


def gunicorn_command(bin_dir: Path, port: int) -> list[str]:
    """Flask under gunicorn: one sync worker (the best of sync/gthread here, see flask_twilio.py)."""
    return [str(bin_dir / "gunicorn"), "--chdir", str(HERE), "--workers", "1", "--worker-class", "sync",
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "flask_twilio:app"]


def uvicorn_command(bin_dir: Path, port: int) -> list[str]:
    """pywa's app under the ceiling's uvicorn settings (one worker, no access log, uvloop/httptools)."""
    return [str(bin_dir / "python"), "-m", "uvicorn", "--app-dir", str(HERE), "pywa_meta:app", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning"]


@contextmanager
def _worker(server: servers.Running) -> Iterator[servers.Running]:
    """gunicorn's worker as the server under test: its CPU and RSS are the per-worker numbers
    (as uvicorn's single process is for the others); the master only supervises."""
    workers = rss.children(server.pid)
    yield servers.Running(server.url, workers[0]) if len(workers) == 1 else server


def flask_twilio(load: Load) -> CaseResult:
    case = CaseResult("peer: Flask + twilio RequestValidator",
                      "gunicorn (1 sync worker) + Flask: twilio SDK RequestValidator on request.url and form, "
                      "empty TwiML; no storage",
                      key="peer-flask-twilio", compare_to=None)
    requests = load.files["twilio"]
    bin_dir = environment.ensure()
    log = load.workdir / f"{case.key}.log"
    env = {"BENCH_AUTH_TOKEN": requests.builder.secret}
    with servers.serving(gunicorn_command(bin_dir, load.hookline_port), load.hookline_port, log, HERE, env) as server:
        master = server.pid
        with _worker(server) as worker:
            _load(case, load, worker, requests, extra_pids=lambda: [master] if worker.pid != master else [])
    case.server_log_problems = _log_problems(log)
    return case


def pywa_env(builder: MetaInbound) -> dict[str, str]:
    """What pywa_meta.py is configured with: the run's app secret and the fixture's phone id."""
    phone_id = json.loads(builder.FIXTURE.read_text(encoding="utf-8"))["entry"][0]["changes"][0]["value"]["metadata"]
    return {"BENCH_APP_SECRET": builder.secret, "BENCH_PHONE_ID": phone_id["phone_number_id"]}


def pywa_meta(load: Load) -> CaseResult:
    case = CaseResult("peer: pywa server, signature validation on",
                      "uvicorn + FastAPI + pywa_async 3.9's webhook routes: X-Hub-Signature-256 check (validate_updates), "
                      "update parsed and dispatched to an on_message that only counts; no storage",
                      key="peer-pywa-meta", compare_to=None)
    requests = load.files["meta1"]
    assert isinstance(requests.builder, MetaInbound)
    bin_dir = environment.ensure()
    log = load.workdir / f"{case.key}.log"
    command = uvicorn_command(bin_dir, load.hookline_port)
    with servers.serving(command, load.hookline_port, log, HERE, pywa_env(requests.builder)) as server:
        measured = _load(case, load, server, requests)
        with urllib.request.urlopen(server.url + "/bench/handled", timeout=5) as answer:
            handled = int(json.load(answer)["handled"])
    ok = _ok_answers(measured) + sum(n for code, n in (case.warmup or {}).get("statuses", {}).items() if 200 <= int(code) < 300)
    if handled < ok:  # pywa answers a bad signature 200 and drops it: a 2xx alone proves nothing
        case.fail(f"{ok} answers were 2xx but pywa handed only {handled} messages to the handler (signatures rejected?)")
    case.server_log_problems = _log_problems(log)
    return case
