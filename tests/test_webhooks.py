"""Webhooks: events derived from stored records, queued in the same transaction, delivered
signed to real HTTP receivers on 127.0.0.1 - down, failing, hanging - exactly once per
idempotency key; the JSON Schemas in docs/webhooks/ describe what is sent."""
from __future__ import annotations

import json
import time
from pathlib import Path

import gevent
import jsonschema
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError

from daemon.definition import model as m
from daemon.definition.config import ConfigErrors, load_center
from daemon.integrations import webhooks as wh
from daemon.integrations.delivery import WebhookDelivery, backoff_s
from daemon.storage import outbox, schema
from daemon.storage.store import Store, StoreUnavailable, migrate
from tests import scenario
from tests.test_store import pg_via_proxy  # noqa: F401 - fixture: PostgreSQL behind a cuttable proxy
from tests.webhook_receiver import Receiver

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "docs" / "webhooks"
SECRET = "s3cret-signing-key-0123"


def center_with(*subs: m.WebhookSubscription) -> m.CallCenter:
    return m.CallCenter((m.Tenant(id="demo", domain="hotline.test", timezone="Europe/Berlin",
                                  webhooks=subs),))


def sub(name: str, url: str, events=m.WEBHOOK_EVENTS, **kw) -> m.WebhookSubscription:
    return m.WebhookSubscription(name=name, url=url, events=tuple(events), secret=SECRET, **kw)


def write_capture(url: str, writer: outbox.OutboxWriter, *names: str) -> None:
    store = Store(url, outbox=writer, spill_dir=None)
    try:
        for name in names:
            for out in scenario.replay(name).outputs:
                store.write(out)
        store.flush()
    finally:
        store.close()


def outbox_rows(url: str) -> list[dict]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(schema.webhook_outbox))]
    engine.dispose()
    return rows


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        gevent.sleep(0.05)


def validate(payload: dict) -> None:
    schema_doc = json.loads((SCHEMAS / f"{payload['type']}.schema.json").read_text())
    jsonschema.validate(payload, schema_doc, format_checker=jsonschema.FormatChecker())


def rows_of(name: str) -> dict[str, list[dict]]:
    from daemon.storage.store import rows_of as store_rows

    by_table: dict[str, dict[str, dict]] = {}
    for out in scenario.replay(name).outputs:
        for table, key, row in store_rows(out):
            by_table.setdefault(table, {})[key] = row
    return {t: list(v.values()) for t, v in by_table.items()}


# --- YAML -------------------------------------------------------------------------------

def test_a_tenants_webhooks_are_read_from_yaml_with_the_secret_from_the_environment(tmp_path):
    (tmp_path / "t.yaml").write_text(
        "tenants:\n  demo:\n    domain: hotline.test\n    timezone: Europe/Berlin\n"
        "    webhooks:\n      crm:\n        url: https://crm.example/hooks\n"
        "        events: [call.answered, call.ended]\n        secret: ${CRM_SECRET}\n"
        "        concurrency: 8\n        timeout_s: 2.5\n        dead_letter_after_h: 1\n")
    center = load_center(tmp_path, env={"CRM_SECRET": SECRET})
    (hook,) = center.tenant("demo").webhooks
    assert (hook.name, hook.url, hook.events, hook.secret) == (
        "crm", "https://crm.example/hooks", ("call.answered", "call.ended"), SECRET)
    assert (hook.concurrency, hook.timeout_s, hook.dead_letter_after_s) == (8, 2.5, 3600)
    assert SECRET not in repr(hook)


def test_webhook_mistakes_are_reported_each_at_its_file_and_line(tmp_path):
    (tmp_path / "t.yaml").write_text(
        "tenants:\n  demo:\n    domain: hotline.test\n    timezone: Europe/Berlin\n"
        "    webhooks:\n      crm:\n        url: ftp://crm.example\n"
        "        events: [call.answerd]\n        secret: short\n        retries: 3\n")
    with pytest.raises(ConfigErrors) as info:
        load_center(tmp_path, env={})
    lines = [str(e) for e in info.value.errors]
    assert any(":7:" in s and "not an http:// or https:// URL" in s for s in lines), lines
    assert any(":8:" in s and "'call.answerd'" in s and "did you mean 'call.answered'" in s
               for s in lines), lines
    assert any(":9:" in s and "at least 16" in s for s in lines), lines
    assert any(":10:" in s and "unknown key 'retries'" in s for s in lines), lines


# --- events -----------------------------------------------------------------------------

def test_an_answered_call_gives_offered_answered_and_ended_events_matching_their_schemas():
    rows = rows_of("answered_ivr")
    call = rows["calls"][0]
    calls = {call["call_id"]: call}
    segs = {call["call_id"]: [s for s in rows["segments"] if s["call_id"] == call["call_id"]]}
    events = wh.events_of(rows, calls, segs)
    by_type = {}
    for ev in events:
        by_type.setdefault(ev.type, []).append(ev)
        validate(json.loads(ev.body("demo")))
    assert {"call.offered", "call.answered", "call.ended", "agent.status_changed"} <= set(by_type)
    answered = by_type["call.answered"][0].data
    assert answered["caller"] == "13800138001" and answered["caller_name"] == "Wang Fang"
    assert answered["agent"] == "1001@hotline.test" and answered["queue"] == "billing@hotline.test"
    assert answered["ivr_path"] == "1" and answered["wait_s"] == pytest.approx(2.06)
    ended = by_type["call.ended"][0].data
    assert ended["outcome"] == "answered"
    assert [s["kind"] for s in ended["segments"]] == ["ivr", "queue", "ring", "talk", "wrapup"]
    # ids are deterministic: the same records give the same idempotency keys
    assert [e.event_id for e in wh.events_of(rows, calls, segs)] == [e.event_id for e in events]


def test_an_abandoned_call_a_callback_request_and_a_survey_give_their_events():
    rows = rows_of("abandoned_long")
    base = {"tenant": "hotline.test", "node": "vm", "caller": "13800138002", "dialed": "4008001234",
            "call_id": "c1", "started_ms": 1795345700000, "ended_ms": 1795345700000,
            "queue": "billing@hotline.test", "agent": "1001@hotline.test"}
    rows["segments"] += [dict(base, segment_id="c1:callback:0", kind="callback",
                              target="13800138002", outcome="requested", score=None),
                         dict(base, segment_id="c1:survey:0", kind="survey", score=5)]
    events = wh.events_of(rows, {}, {})
    for ev in events:
        validate(json.loads(ev.body("demo")))
    kinds = {ev.type for ev in events}
    assert {"call.abandoned", "callback.requested", "survey.completed", "call.ended"} <= kinds
    abandoned = next(ev for ev in events if ev.type == "call.abandoned").data
    assert abandoned["wait_s"] == pytest.approx(25.0) and abandoned["short"] is False


def test_a_signature_verifies_and_a_tampered_body_or_wrong_secret_does_not():
    body = b'{"version":1}'
    sig = wh.signature(SECRET, 1_800_000_000, body)
    assert wh.verify(SECRET, "1800000000", body, sig, now_s=1_800_000_010)
    assert not wh.verify(SECRET, "1800000000", body + b" ", sig, now_s=1_800_000_010)
    assert not wh.verify("another-secret-0000", "1800000000", body, sig, now_s=1_800_000_010)
    assert not wh.verify(SECRET, "1800000000", body, sig, now_s=1_800_001_000)  # replayed late


def test_backoff_grows_exponentially_with_jitter_and_stays_capped():
    assert backoff_s(1, 1.0, 600, rand=lambda: 1.0) == 1.0
    assert backoff_s(5, 1.0, 600, rand=lambda: 1.0) == 16.0
    assert backoff_s(30, 1.0, 600, rand=lambda: 1.0) == 600.0
    assert backoff_s(5, 1.0, 600, rand=lambda: 0.0) == 0.5  # never hammers


# --- the outbox -------------------------------------------------------------------------

def test_messages_are_queued_once_per_subscriber_and_event_however_often_records_are_written(
        empty_db_url):
    writer = outbox.OutboxWriter(center_with(
        sub("crm", "http://127.0.0.1:9/a", ["call.answered", "call.ended"]),
        sub("bi", "http://127.0.0.1:9/b", ["call.ended"])))
    write_capture(empty_db_url, writer, "answered_ivr")
    first = outbox_rows(empty_db_url)
    write_capture(empty_db_url, writer, "answered_ivr")  # a replay after a restart
    again = outbox_rows(empty_db_url)
    assert sorted((r["subscription"], r["event"]) for r in first) == [
        ("bi", "call.ended"), ("crm", "call.answered"), ("crm", "call.ended")]
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in first)
    assert {r["status"] for r in again} == {"pending"}


def test_records_and_their_messages_commit_together_or_not_at_all(empty_db_url):
    writer = outbox.OutboxWriter(center_with(sub("crm", "http://127.0.0.1:9/a")))
    migrate(empty_db_url)

    def outage_at_commit(conn, by_table):
        writer(conn, by_table)  # messages inserted ...
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    store = Store(empty_db_url, outbox=outage_at_commit)
    for out in scenario.replay("answered_ivr").outputs:
        store.write(out)
    with pytest.raises(StoreUnavailable):
        store.flush()
    engine = create_engine(empty_db_url)
    with engine.connect() as conn:  # ... and rolled back with their records
        assert conn.execute(select(func.count()).select_from(schema.calls)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(schema.webhook_outbox)).scalar() == 0
    store.outbox = writer  # the database is back: both are written by the retry
    store.flush()
    store.close()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.calls)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(schema.webhook_outbox)).scalar() > 0
    engine.dispose()


# --- delivery -----------------------------------------------------------------------------

def worker(url: str, center: m.CallCenter) -> WebhookDelivery:
    return WebhookDelivery(url, center, backoff_base_s=0.2, backoff_max_s=0.5,
                           lease_margin_s=1.0, idle_poll_s=0.1).start()


def test_a_receiver_down_for_a_while_then_up_gets_everything_exactly_once_by_key(empty_db_url):
    with Receiver() as rx:
        rx.reserve_port()  # the URL is known, nobody listens: connection refused
        center = center_with(sub("crm", rx.url, concurrency=3, timeout_s=1.0))
        write_capture(empty_db_url, outbox.OutboxWriter(center), "answered_ivr",
                      "abandoned_long", "agent_status")
        expected = {r["event_id"] for r in outbox_rows(empty_db_url)}
        delivery = worker(empty_db_url, center)
        try:
            wait_until(lambda: all(r["attempts"] >= 2 for r in outbox_rows(empty_db_url)), 20,
                       "every message tried at least twice while the receiver is down")
            assert rx.received == []
            rx.start()
            wait_until(lambda: {r["status"] for r in outbox_rows(empty_db_url)} == {"delivered"},
                       30, "all delivered")
        finally:
            delivery.stop()
        assert sorted(rx.keys()) == sorted(expected)  # each event once, none lost
        for got in rx.received:
            assert wh.verify(SECRET, got.headers["Hotline-Timestamp"], got.body,
                             got.headers["Hotline-Signature"], now_s=time.time())
            assert not wh.verify("not-the-secret-123", got.headers["Hotline-Timestamp"],
                                 got.body, got.headers["Hotline-Signature"], now_s=time.time())
            assert got.json["id"] == got.key and got.headers["Hotline-Event"] == got.json["type"]
            validate(got.json)


def test_receivers_that_fail_garbage_or_hang_are_retried_and_never_hold_up_a_healthy_one(
        empty_db_url):
    with Receiver() as good, Receiver("500") as err, Receiver("garbage") as junk, \
            Receiver("hang") as slow:
        for rx in (good, err, junk, slow):
            rx.start()
        events = ["call.offered", "call.answered", "call.ended", "agent.status_changed"]
        center = center_with(sub("good", good.url, events, concurrency=2),
                             sub("err", err.url, events),
                             sub("junk", junk.url, events),
                             sub("slow", slow.url, events, concurrency=1, timeout_s=0.5))
        write_capture(empty_db_url, outbox.OutboxWriter(center), "answered_ivr")
        per_sub = len(outbox_rows(empty_db_url)) // 4
        delivery = worker(empty_db_url, center)
        try:
            started = time.monotonic()
            wait_until(lambda: len(good.received) == per_sub, 10, "the healthy receiver served")
            assert time.monotonic() - started < 3  # not behind the hanging one's timeouts
            wait_until(lambda: err.attempts >= per_sub * 2 and junk.attempts >= per_sub * 2
                       and slow.attempts >= 2, 20, "the failing ones retried")
            assert not (err.received or junk.received or slow.received)
            for rx in (err, junk, slow):
                rx.mode = "ok"
            wait_until(lambda: {r["status"] for r in outbox_rows(empty_db_url)} == {"delivered"},
                       30, "all delivered once the receivers are healthy")
        finally:
            delivery.stop()
        for rx in (good, err, junk, slow):
            assert len(set(rx.keys())) == per_sub
        errors = {r["subscription"]: r["last_status"] for r in outbox_rows(empty_db_url)}
        assert errors["err"] == 204  # the last attempt's status is kept


def test_a_message_undelivered_past_its_dead_letter_age_is_dead_until_retried(empty_db_url):
    from click.testing import CliRunner

    from daemon.cli import hotline

    with Receiver("500") as rx:
        rx.start()
        center = center_with(sub("crm", rx.url, ["call.ended"], dead_letter_after_s=1))
        write_capture(empty_db_url, outbox.OutboxWriter(center), "answered_ivr")
        delivery = worker(empty_db_url, center)
        runner = CliRunner()
        try:
            wait_until(lambda: outbox_rows(empty_db_url)[0]["status"] == "dead", 10, "dead")
            shown = runner.invoke(hotline, ["webhooks", "status", "--db", empty_db_url, "--json"])
            assert shown.exit_code == 0, shown.output
            (line,) = json.loads(shown.output)
            assert (line["subscription"], line["dead"], line["last_error"]) == ("crm", 1, "HTTP 500")
            rx.mode = "ok"
            retried = runner.invoke(hotline, ["webhooks", "retry", "--db", empty_db_url])
            assert retried.output.strip() == "1 dead message queued again"
            delivery.wake()
            wait_until(lambda: outbox_rows(empty_db_url)[0]["status"] == "delivered", 10,
                       "delivered after retry")
            replayed = runner.invoke(hotline, ["webhooks", "replay", "--db", empty_db_url,
                                               "--from", "2026-11-22", "--to", "2026-11-22"])
            assert replayed.output.strip() == "1 message queued again", replayed.output
            delivery.wake()
            wait_until(lambda: len(rx.received) == 2, 10, "replayed")
        finally:
            delivery.stop()
        assert rx.received[0].key == rx.received[1].key  # the same event, the same key


# --- the daemon ---------------------------------------------------------------------------

def test_a_daemon_killed_mid_delivery_delivers_everything_after_its_restart(tmp_path,
                                                                            empty_db_url,
                                                                            redis_url):
    import shutil
    import signal

    from tests.eslpeer import EslPeer, capture_event_frames
    from tests.test_daemon_cli import PASSWORD, subscribed

    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config, ignore=shutil.ignore_patterns("settings.yaml"))
    with EslPeer(password=PASSWORD) as peer, Receiver("hang") as rx:
        rx.start()
        (config / "integrations.yaml").write_text(  # instead of the example's subscription
            "tenants:\n  demo:\n    webhooks:\n      crm:\n"
            f"        url: {rx.url}\n        secret: ${{CRM_SECRET}}\n        concurrency: 2\n"
            "        timeout_s: 1\n        events: [call.offered, call.answered, call.ended,"
            " agent.status_changed]\n")
        settings = tmp_path / "settings.yaml"
        settings.write_text(
            "settings:\n"
            f"  esl: \"vm=127.0.0.1:{peer.port}:{PASSWORD}\"\n"
            f"  database_url: \"{empty_db_url}\"\n"
            f"  redis_url: \"{redis_url}\"\n"
            f"  journal_dir: \"{tmp_path / 'journal'}\"\n"
            f"  config_dir: \"{config}\"\n  http_listen: \"\"\n")
        import os
        import subprocess
        import sys

        env = dict(os.environ, CRM_SECRET=SECRET)

        def daemon(log: str) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "daemon",
                                     "--settings", str(settings)], cwd=REPO, env=env,
                                    stdout=subprocess.DEVNULL,
                                    stderr=(tmp_path / log).open("wb"))

        proc = daemon("first.log")
        try:
            peer.wait_subscribed(timeout=30)
            frames = [f for f in capture_event_frames(scenario.capture_path("answered_ivr"))
                      if subscribed(f)]
            peer.replay(frames)
            wait_until(lambda: any(r["event"] == "call.ended" for r in outbox_rows(empty_db_url)),
                       30, "the call's messages queued")
            wait_until(lambda: rx.attempts >= 2, 10, "deliveries in flight")
            proc.send_signal(signal.SIGKILL)  # mid-delivery: two requests hang unanswered
            proc.wait(10)
            expected = {r["event_id"] for r in outbox_rows(empty_db_url)}
            assert {r["status"] for r in outbox_rows(empty_db_url)} == {"pending"}
            rx.mode = "ok"
            proc = daemon("second.log")
            wait_until(lambda: {r["status"] for r in outbox_rows(empty_db_url)} == {"delivered"},
                       60, "everything delivered by the restarted daemon")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    keys = rx.keys()
    assert set(keys) == expected
    # only what was in flight at the kill can arrive twice; the key tells the receiver
    assert len(keys) - len(expected) <= 2


def test_a_database_outage_loses_no_message_and_sends_none_twice(pg_via_proxy, tmp_path):
    direct, proxied, proxy = pg_via_proxy
    migrate(direct)
    with Receiver() as rx:
        rx.start()
        center = center_with(sub("crm", rx.url, timeout_s=1.0))
        writer = outbox.OutboxWriter(center)
        store = Store(proxied, outbox=writer, spill_dir=tmp_path / "spill",
                      retry_initial_s=0.05)
        delivery = worker(proxied, center)
        try:
            proxy.cut()  # PostgreSQL is gone while calls happen
            for name in ("answered_ivr", "abandoned_long"):
                for out in scenario.replay(name).outputs:
                    store.write(out)
            with pytest.raises(StoreUnavailable):
                store.flush()  # the records wait in memory, their messages with them
            gevent.sleep(0.5)  # the worker's claims fail meanwhile; it keeps trying
            assert rx.received == [] and outbox_rows(direct) == []
            proxy.restore()
            store.flush()
            delivery.wake()
            expected = {r["event_id"] for r in outbox_rows(direct)}
            assert expected
            wait_until(lambda: {r["status"] for r in outbox_rows(direct)} == {"delivered"}, 30,
                       "all delivered after the outage")
        finally:
            delivery.stop()
            store.close()
    keys = rx.keys()
    assert sorted(keys) == sorted(expected) and len(keys) == len(set(keys))
