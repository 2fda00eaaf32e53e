"""The peers: the same signed webhooks against pywa's own server and a Flask + twilio SDK app.

The apps (flask_twilio.py, pywa_meta.py) run in their own venv (environment.py) and are imported
there as top-level modules; the cases (cases.py) run in the harness.
"""

from bench.peers.cases import flask_twilio, pywa_meta

__all__ = ["flask_twilio", "pywa_meta"]
