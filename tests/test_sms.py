"""SMS to callers: GSM-7 / UCS-2 length checked at validate time, texts queued in the outbox
with the records that caused them, opt-outs and the per-number rate limit honoured, sent
to a real HTTP gateway on 127.0.0.1, results stored and shown."""
from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from daemon.cli import hotline
from daemon.definition import model as m
from daemon.definition.config import ConfigErrors, load_center
from daemon.definition.settings import load_settings
from daemon.engine.records import EngineOutput
from daemon.integrations.delivery import WebhookDelivery
from daemon.integrations.sms import gateway_request, segments
from daemon.storage import outbox
from daemon.storage.store import Store, migrate
from tests import scenario
from tests.test_webhooks import outbox_rows, wait_until, write_capture
from tests.webhook_receiver import Receiver

TENANT_YAML = ("tenants:\n  demo:\n    domain: hotline.test\n    timezone: Europe/Berlin\n"
               "    country: CN\n    sms:\n{sms}")


def sms_tenant(**kw) -> m.Tenant:
    sms = m.SmsConfig(templates=(m.SmsTemplate(
        "call.abandoned", "Sorry we missed you in {queue}. We call you back soon."),),
        sender="Hotline", **kw)
    return m.Tenant(id="demo", name="Demo", domain="hotline.test", timezone="Europe/Berlin",
                    country="CN", sms=sms, queues=(m.Queue(id="billing", name="Billing"),))


GATEWAY = m.SmsGateway(url="http://127.0.0.1:9/sms", headers=(("Authorization", "Bearer k"),))


# --- length -----------------------------------------------------------------------------

def test_gsm7_fits_160_in_one_message_and_153_per_part_beyond():
    assert segments("x" * 160) == ("GSM-7", 160, 1)
    assert segments("x" * 161) == ("GSM-7", 161, 2)
    assert segments("x" * 306) == ("GSM-7", 306, 2) and segments("x" * 307)[2] == 3
    assert segments("€" * 80) == ("GSM-7", 160, 1)  # extension characters count twice


def test_one_chinese_character_makes_a_message_ucs2_with_70_then_67():
    assert segments("您好" * 35) == ("UCS-2", 70, 1)
    assert segments("x" * 70 + "您") == ("UCS-2", 71, 2)
    assert segments("x" * 134)[0] == "GSM-7"


def test_templates_too_long_for_max_segments_or_with_unknown_variables_point_at_their_line(
        tmp_path):
    (tmp_path / "t.yaml").write_text(TENANT_YAML.format(sms=(
        "      max_segments: 1\n      templates:\n"
        "        call.abandoned: \"{customer_name}您好，我们错过了您的来电。我们的客服人员会尽快给您回电，"
        "请保持电话畅通。谢谢！\"\n"
        "        survey.completed: \"Thanks {nickname}!\"\n"
        "        call.answerd: \"x\"\n")), encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_center(tmp_path, env={})
    f = tmp_path / "t.yaml"
    assert [str(e) for e in info.value.errors] == [
        f"{f}:9:25: SMS template 'call.abandoned' of 'sms' of tenant 'demo' is UCS-2 (a "
        f"character or variable outside GSM-7) and up to 71 characters long: 2 messages "
        f"(70/67 per message), more than max_segments 1.",
        f"{f}:10:27: SMS template 'survey.completed' of 'sms' of tenant 'demo' uses {{nickname}}, "
        f"which is not one of {{caller}}, {{queue}}, {{tenant}}, {{number}}, {{score}}, "
        f"{{customer_name}}.",
        f"{f}:11:9: an SMS template's event of 'sms' of tenant 'demo' is 'call.answerd', which "
        f"is not one of call.abandoned, callback.requested, survey.completed; did you mean "
        f"'call.abandoned'?",
    ]


def test_a_template_that_fits_is_read_with_the_gateway_of_the_settings(tmp_path):
    (tmp_path / "t.yaml").write_text(TENANT_YAML.format(sms=(
        "      sender: Hotline\n      rate_limit_per_day: 2\n      templates:\n"
        "        call.abandoned: \"Sorry we missed you in {queue}. We call you back soon.\"\n")))
    sms = load_center(tmp_path, env={}).tenant("demo").sms
    assert (sms.sender, sms.rate_limit_per_day, sms.template("call.abandoned").text) == (
        "Hotline", 2, "Sorry we missed you in {queue}. We call you back soon.")
    settings = tmp_path / "settings.yaml"
    settings.write_text("settings:\n  sms_gateway:\n    url: https://sms.example/send\n"
                        "    body: 'to={to}&msg={text}'\n"
                        "    content_type: application/x-www-form-urlencoded\n"
                        "    headers:\n      Authorization: Bearer ${SMS_KEY}\n")
    gateway = load_settings(str(settings), env={"SMS_KEY": "k3y",
                                                "HOTLINE_CONFIG_DIR": str(tmp_path)}).sms_gateway
    method, headers, body = gateway_request(gateway, "+8613800138002", "Hi & bye", None)
    assert (method, headers["Authorization"], body) == (
        "POST", "Bearer k3y", b"to=%2B8613800138002&msg=Hi%20%26%20bye")
    assert "k3y" not in repr(gateway)


# --- the outbox and the gateway -----------------------------------------------------------

def center_of(tenant: m.Tenant) -> m.CallCenter:
    return m.CallCenter((tenant,))


def sms_rows(url: str) -> list[dict]:
    return [r for r in outbox_rows(url) if r["subscription"] == "sms"]


def test_an_abandoned_caller_is_texted_once_and_an_opted_out_one_is_skipped(empty_db_url):
    tenant = sms_tenant()

    def write(*captures: str) -> None:
        write_capture(empty_db_url, outbox.OutboxWriter(center_of(tenant), sms_gateway=GATEWAY),
                      *captures)

    write("abandoned_long")
    write("abandoned_long")  # written again (a restart, a replay): no second text
    (row,) = sms_rows(empty_db_url)
    text = json.loads(row["payload"])
    assert (row["recipient"], row["status"], text["to"], text["sender"], text["text"]) == (
        "+8613800138002", "pending", "+8613800138002", "Hotline",
        "Sorry we missed you in Billing. We call you back soon.")
    out = CliRunner().invoke(hotline, ["sms", "opt-out", "013800138003", "--tenant", "demo",
                                       "--db", empty_db_url, "--config", _config_dir(tenant)])
    assert out.exit_code == 0 and out.output.strip() == \
        "+8613800138003 opted out of SMS from tenant 'demo'"
    write("abandoned_short")  # that caller hangs up in the queue too
    skipped = [r for r in sms_rows(empty_db_url) if r["recipient"] == "+8613800138003"]
    assert [(r["status"], r["last_error"]) for r in skipped] == [("skipped", "opted out")]
    back = ["sms", "opt-in", "+86 138 0013 8003", "--tenant", "demo", "--db", empty_db_url,
            "--config", _config_dir(tenant)]
    out = CliRunner().invoke(hotline, back)
    assert out.exit_code == 0 and out.output.strip() == \
        "+8613800138003 may get SMS from tenant 'demo' again"
    again = CliRunner().invoke(hotline, back)  # nothing left to take back: the user's mistake
    assert again.exit_code == 1 and "had not opted out" in again.output


def _config_dir(tenant: m.Tenant) -> str:
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp())
    (d / "t.yaml").write_text("tenants:\n  demo:\n    domain: hotline.test\n"
                              "    timezone: Europe/Berlin\n    country: CN\n")
    return str(d)


def test_a_number_gets_no_more_than_its_daily_limit(empty_db_url):
    tenant = sms_tenant(rate_limit_per_day=1)
    migrate(empty_db_url)
    writer = outbox.OutboxWriter(center_of(tenant), sms_gateway=GATEWAY)
    store = Store(empty_db_url, outbox=writer)
    for n in range(3):  # the same caller abandons three calls
        for out in scenario.replay("abandoned_long").outputs:
            cid = f"{n:08d}-0000-4000-8000-000000000000"
            store.write(EngineOutput(
                calls=[dataclasses.replace(c, call_id=cid) for c in out.calls],
                segments=[dataclasses.replace(s, call_id=cid, segment_id=cid + s.segment_id[36:])
                          for s in out.segments]))
        store.flush()
    store.close()
    results = sorted((r["status"], r["last_error"]) for r in sms_rows(empty_db_url))
    assert results == [("pending", None), ("skipped", "rate limit: 1 SMS in 24 hours"),
                       ("skipped", "rate limit: 1 SMS in 24 hours")]


def test_texts_reach_the_gateway_with_its_body_template_and_the_results_are_shown(empty_db_url):
    with Receiver() as gw:
        gw.start()
        gateway = m.SmsGateway(url=gw.url, body='{"to": "{to}", "text": "{text}"}',
                               headers=(("Authorization", "Bearer k"),), timeout_s=1)
        tenant = sms_tenant()
        tenant = dataclasses.replace(tenant, sms=dataclasses.replace(
            tenant.sms, templates=(m.SmsTemplate("call.abandoned", '李娜, "sorry" {caller}'),)))
        write_capture(empty_db_url, outbox.OutboxWriter(center_of(tenant), sms_gateway=gateway),
                      "abandoned_long")
        worker = WebhookDelivery(empty_db_url, center_of(tenant), sms_gateway=gateway,
                                 idle_poll_s=0.1).start()
        try:
            wait_until(lambda: len(gw.received) == 1 and sms_rows(empty_db_url)[0]["status"]
                       == "delivered", 10, "the text sent")
        finally:
            worker.stop()
        got = gw.received[0]
        assert got.headers["Authorization"] == "Bearer k"
        assert got.json == {"to": "+8613800138002", "text": '李娜, "sorry" 13800138002'}
    shown = CliRunner().invoke(hotline, ["sms", "status", "--db", empty_db_url, "--json"])
    assert json.loads(shown.output) == [{"tenant": "hotline.test", "event": "call.abandoned",
                                         "result": "sent", "reason": None, "count": 1}]
    period = ["--from", "2026-11-22", "--to", "2026-11-22", "--db", empty_db_url]
    again = CliRunner().invoke(hotline, ["webhooks", "replay", *period])
    assert again.output.strip() == "0 messages queued again"  # callers are not texted twice
    asked = CliRunner().invoke(hotline, ["webhooks", "replay", *period, "--subscription", "sms"])
    assert asked.output.strip() == "1 message queued again"
