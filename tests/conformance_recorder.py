"""The recording provider's answers to the conformance suite (tests/test_conformance.py runs
it; the kit's own tests break the provider and expect the suite to say what broke)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from starlette.responses import JSONResponse, Response

from core import Number
from core.testing import Delivery, ErrorAnswer, ProviderConformance, Sample, json_delivery
from tests import recording_provider
from tests.fake_api import FakeApi

INBOUND = "/webhooks/whatsapp/recorder"
STATUS = "/webhooks/whatsapp/recorder/status"


class RecorderConformance(ProviderConformance):
    plugin = recording_provider
    provider = "recorder"

    @pytest.fixture(scope="class")
    @classmethod
    def fake(cls) -> Iterator[FakeApi]:
        with FakeApi().running() as fake:
            yield fake

    def number_settings(self, fake: FakeApi, index: int) -> dict[str, Any]:
        return {"secret": f"recorder-secret-{index}", "api_url": fake.url}

    def prove(self, delivery: Delivery, number: Number) -> Delivery:
        secret = number.settings.secret.get_secret_value()
        return delivery.with_headers(**{"X-Test-Signature": recording_provider.sign(secret, delivery.body)})

    def inbound_webhook(self, number: Number, index: int, text: str) -> Delivery:
        return json_delivery(INBOUND, {"messages": [{"id": f"msg-{index}", "from": self.customer, "text": text}]},
                             **{"X-Test-Number": number.id})

    def status_webhook(self, number: Number, external_id: str, status: str) -> Delivery:
        return json_delivery(STATUS, {"statuses": [{"id": external_id, "status": status}]}, **{"X-Test-Number": number.id})

    def samples(self, number: Number) -> Sequence[Sample]:
        two = {"messages": [{"id": "s-1", "from": self.customer, "text": "one", "name": "Ana"},
                            {"id": "s-2", "from": "+15550100999", "text": "two"}]}
        statuses = {"statuses": [{"id": "FAKE-x", "status": "delivered"}, {"id": "FAKE-y", "status": "failed",
                                                                          "error_code": "30003", "error_text": "unreachable"}]}
        return [
            Sample("two texts", json_delivery(INBOUND, two, **{"X-Test-Number": number.id}), messages=2),
            Sample("two statuses", json_delivery(STATUS, statuses, **{"X-Test-Number": number.id}), statuses=2),
        ]

    def permanent_error(self) -> ErrorAnswer:
        return ErrorAnswer(JSONResponse({"code": "bad_number", "message": "not a phone number"}, 400), code="bad_number")

    def transient_error(self) -> ErrorAnswer:
        return ErrorAnswer(Response(status_code=503))

    def rate_limit(self) -> ErrorAnswer:
        return ErrorAnswer(JSONResponse({"code": "429", "message": "slow down"}, 429))


