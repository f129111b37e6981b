"""The statistics database: tables for calls, segments, agent intervals and manual inputs.

Times are BIGINT milliseconds since the Unix epoch (UTC, switch clock). Integer
times keep every KPI query portable between SQLite and PostgreSQL: intervals in
a tenant's time zone are computed in Python as [start_ms, end_ms) bounds and
joined in SQL, so no database-specific time-zone function is needed.

Migrations: ``daemon/migrations`` (Alembic) creates and evolves these tables;
this module is the single definition they are generated from.
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

calls = Table(
    "calls",
    metadata,
    Column("call_id", String(64), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("node", String(128), nullable=False),
    Column("direction", String(16), nullable=False, default="inbound"),
    Column("caller", String(64), nullable=False, default=""),
    Column("caller_name", String(128), nullable=False, default=""),
    Column("dialed", String(64), nullable=False, default=""),
    # in the primary key: PostgreSQL partitions calls by the month of their start
    # (daemon/storage/partitions.py), and a partitioned table's keys include the partition
    # key; a call's start never changes, so (call_id, started_ms) is as unique as call_id
    Column("started_ms", BigInteger, nullable=False, primary_key=True),
    Column("ended_ms", BigInteger),
    Column("outcome", String(32), nullable=False),
    Column("ivr_path", String(64), nullable=False, default=""),
    Column("first_queue", String(160)),
)
Index("ix_calls_tenant_started", calls.c.tenant, calls.c.started_ms)
Index("ix_calls_caller_started", calls.c.caller, calls.c.started_ms)

segments = Table(
    "segments",
    metadata,
    Column("segment_id", String(200), primary_key=True),
    Column("call_id", String(64), nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("node", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("started_ms", BigInteger, nullable=False, primary_key=True),  # as calls.started_ms
    Column("ended_ms", BigInteger),
    Column("duration_ms", BigInteger),
    Column("caller", String(64), nullable=False, default=""),
    Column("dialed", String(64), nullable=False, default=""),
    Column("queue", String(160)),
    Column("agent", String(160)),
    Column("outcome", String(32)),
    Column("visit_id", String(64)),
    Column("queue_entered_ms", BigInteger),
    Column("menu", String(128)),
    Column("digits", String(32)),
    Column("target", String(160)),
    Column("transfer_type", String(16)),
    Column("score", Integer),
    Column("disposition", String(32)),
    Column("recording", Text),
    Column("hangup_by", String(16)),
    Column("attrs", Text),  # JSON object of extra attributes
)
# KPI access paths: time range × tenant × kind, then queue or agent.
Index("ix_segments_tenant_kind_entered", segments.c.tenant, segments.c.kind,
      segments.c.queue_entered_ms)
Index("ix_segments_queue_entered", segments.c.queue, segments.c.kind, segments.c.queue_entered_ms)
Index("ix_segments_agent_started", segments.c.agent, segments.c.kind, segments.c.started_ms)
Index("ix_segments_call", segments.c.call_id)
Index("ix_segments_visit", segments.c.visit_id)

agent_intervals = Table(
    "agent_intervals",
    metadata,
    Column("interval_id", String(220), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("node", String(128), nullable=False),
    Column("agent", String(160), nullable=False),
    Column("kind", String(8), nullable=False),  # status | state
    Column("value", String(32), nullable=False),
    Column("reason", String(64)),
    Column("started_ms", BigInteger, nullable=False),
    Column("ended_ms", BigInteger),
    Column("duration_ms", BigInteger),
)
Index("ix_agent_intervals_agent_started", agent_intervals.c.agent, agent_intervals.c.kind,
      agent_intervals.c.started_ms)
Index("ix_agent_intervals_tenant_started", agent_intervals.c.tenant, agent_intervals.c.started_ms)

qa_scores = Table(
    "qa_scores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(64), nullable=False),
    Column("agent", String(160), nullable=False),
    Column("score", Integer, nullable=False),  # 0-100
    Column("scored_by", String(128), nullable=False),
    Column("note", Text),
    Column("scored_ms", BigInteger, nullable=False),
)
Index("ix_qa_scores_agent", qa_scores.c.agent, qa_scores.c.scored_ms)
Index("ix_qa_scores_call", qa_scores.c.call_id)

dispositions = Table(
    "dispositions",
    metadata,
    Column("call_id", String(64), primary_key=True),
    Column("agent", String(160)),
    Column("code", String(32), nullable=False),
    Column("source", String(16), nullable=False),  # phone | cli
    Column("entered_ms", BigInteger, nullable=False),
)

# --- integrations (daemon/integrations/) ---------------------------------------------------

# The webhook outbox (daemon/storage/outbox.py): one row per (subscription, event), written
# in the same transaction as the records the event comes from; the delivery worker's
# backoff state lives in the row, so a restart resumes where the last process stopped.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256(tenant, subscription, event_id)
    Column("tenant", String(128), nullable=False),  # the tenant's domain
    Column("subscription", String(128), nullable=False),
    Column("event", String(32), nullable=False),
    Column("event_id", String(250), nullable=False),  # the idempotency key receivers see
    Column("payload", Text, nullable=False),  # the JSON body, fixed when the event happened
    Column("occurred_ms", BigInteger, nullable=False),  # switch clock
    Column("created_ms", BigInteger, nullable=False),  # daemon clock: the dead-letter age
    Column("status", String(12), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_ms", BigInteger, nullable=False),  # also a claim's lease end
    Column("claimed_by", String(64)),  # the worker sending it now (None: nobody)
    Column("last_status", Integer),  # the receiver's last HTTP status
    Column("last_error", String(300)),
    Column("delivered_ms", BigInteger),
    Column("recipient", String(32)),  # SMS: the number texted (rate limit, opt-out)
)
Index("ix_webhook_outbox_due", webhook_outbox.c.status, webhook_outbox.c.next_attempt_ms)
Index("ix_webhook_outbox_tenant_occurred", webhook_outbox.c.tenant,
      webhook_outbox.c.occurred_ms)
Index("ix_webhook_outbox_recipient", webhook_outbox.c.recipient, webhook_outbox.c.created_ms)

# The customer directory (daemon/integrations/customers.py): per tenant, keyed by the
# caller's number in E.164 as the tenant's country reads it.
customers = Table(
    "customers",
    metadata,
    Column("tenant", String(128), primary_key=True),  # the tenant's domain
    Column("number", String(32), primary_key=True),  # E.164, e.g. +8613800138001
    Column("name", String(128), nullable=False),
    Column("account_id", String(64)),
    Column("vip", Integer, nullable=False),  # 0 = not a VIP, 1-9 = VIP level
    Column("tags", Text),  # ";"-separated
    Column("language", String(16)),
    Column("notes", Text),
    Column("updated_ms", BigInteger, nullable=False),
)

# Numbers that asked for no more SMS (daemon/integrations/sms.py), per tenant.
sms_opt_out = Table(
    "sms_opt_out",
    metadata,
    Column("tenant", String(128), primary_key=True),  # the tenant's domain
    Column("number", String(32), primary_key=True),  # E.164
    Column("created_ms", BigInteger, nullable=False),
)

# ---- outbound campaigns (daemon/storage/campaigns.py) -------------------------------------------
# A contact of a campaign, keyed by (tenant, campaign, contact_key): the external id when the
# CSV has one, else the normalised number, so a re-import updates rather than duplicates.
# status: pending (may be dialed at next_ms) | dialing (claimed by claimed_by at claimed_ms)
# | done (reached) | finished (attempts used up) | dnc (on the do-not-call list) | optout.
campaign_contacts = Table(
    "campaign_contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("campaign", String(128), nullable=False),
    Column("contact_key", String(128), nullable=False),
    Column("number", String(32), nullable=False),  # E.164
    Column("name", String(128), nullable=False, default=""),
    Column("external_id", String(128)),
    Column("fields", Text),  # JSON object of the campaign's per-contact fields
    Column("status", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_result", String(16)),
    Column("next_ms", BigInteger, nullable=False, default=0),
    Column("claimed_by", String(64)),
    Column("claimed_ms", BigInteger),
    Column("imported_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
Index("ux_campaign_contacts_key", campaign_contacts.c.tenant, campaign_contacts.c.campaign,
      campaign_contacts.c.contact_key, unique=True)
# the batch query: the due pending contacts of one campaign in next_ms order
Index("ix_campaign_contacts_due", campaign_contacts.c.tenant, campaign_contacts.c.campaign,
      campaign_contacts.c.status, campaign_contacts.c.next_ms, campaign_contacts.c.id)
Index("ix_campaign_contacts_number", campaign_contacts.c.tenant, campaign_contacts.c.number)

# One attempt to reach a contact: written BEFORE the originate (its call_id is the
# origination uuid), its result written when the switch tells; a restart finds the attempts
# left without a result and never dials those contacts again for that attempt.
campaign_attempts = Table(
    "campaign_attempts",
    metadata,
    Column("attempt_id", String(200), primary_key=True),  # "<contact id>:<attempt n>"
    Column("tenant", String(128), nullable=False),
    Column("campaign", String(128), nullable=False),
    Column("contact_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("number", String(32), nullable=False),
    Column("call_id", String(64), nullable=False),
    Column("node", String(128), nullable=False, default=""),
    Column("agent", String(160)),
    Column("started_ms", BigInteger, nullable=False),
    Column("answered_ms", BigInteger),  # the contact answered
    Column("bridged_ms", BigInteger),  # an agent took the call
    Column("ended_ms", BigInteger),
    # answered | busy | no_answer | failed | machine | abandoned | optout | lost
    Column("result", String(16)),
    Column("cause", String(48)),  # the switch's hangup cause
    Column("disposition", String(32)),
)
Index("ix_campaign_attempts_campaign_started", campaign_attempts.c.tenant,
      campaign_attempts.c.campaign, campaign_attempts.c.started_ms)
Index("ix_campaign_attempts_contact", campaign_attempts.c.contact_id)
Index("ix_campaign_attempts_call", campaign_attempts.c.call_id)

# The do-not-call list of a tenant: numbers (E.164) never dialed by any campaign.
dnc_numbers = Table(
    "dnc_numbers",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("number", String(32), primary_key=True),
    Column("reason", String(128), nullable=False, default=""),
    Column("source", String(16), nullable=False),  # cli | import | optout
    Column("added_ms", BigInteger, nullable=False),
)

# What an operator asked a campaign to do: running | paused | stopped (absent = stopped).
campaign_runs = Table(
    "campaign_runs",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("campaign", String(128), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("changed_ms", BigInteger, nullable=False),
)

# Callback requests when there is no Redis (daemon/storage/callbacks.py): the same fields as
# the Redis hash of daemon/switch/dialer.py, one row per call that asked to be called back.
callback_requests = Table(
    "callback_requests",
    metadata,
    Column("call_id", String(64), primary_key=True),
    Column("queue", String(160), nullable=False),
    Column("number", String(64), nullable=False),
    Column("joined_ms", BigInteger, nullable=False),
    Column("node", String(128), nullable=False, default=""),
    Column("requested_ms", BigInteger, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("agent_misses", Integer, nullable=False, default=0),
    Column("next_ms", BigInteger, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Column("last_error", Text, nullable=False, default=""),
    Column("agent", String(160), nullable=False, default=""),
    Column("owner", String(64)),
    Column("claimed_ms", BigInteger),
)
Index("ix_callback_requests_open", callback_requests.c.status, callback_requests.c.joined_ms)

# --- roll-ups (daemon/storage/rollup.py) ---------------------------------------------------
# Sums per 15-minute bucket (UTC-aligned: every real time zone's offset is a multiple of
# 15 minutes, so a report interval of 15 min or longer is a whole number of buckets) x
# tenant x queue x agent, for the KPIs whose definition allows summing. Rebuilt bucket by
# bucket from the raw rows: a bucket is marked in ``rollup_changes`` by triggers on
# ``segments`` and ``calls`` (the old and the new bucket of an updated row), and the
# roll-up job recomputes the marked buckets. No primary key: queue and agent may be NULL.
ROLLUP_BUCKET_MS = 15 * 60_000

rollup_queue = Table(
    "rollup_queue",
    metadata,
    Column("bucket_ms", BigInteger, nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("queue", String(160)),
    Column("agent", String(160)),
    Column("offered", BigInteger, nullable=False),
    Column("answered", BigInteger, nullable=False),
    Column("abandoned", BigInteger, nullable=False),
    Column("short_abandoned", BigInteger, nullable=False),  # with rollup_thresholds' short_ms
    Column("transferred", BigInteger, nullable=False),
    Column("answered_in_sl", BigInteger, nullable=False),  # with rollup_thresholds' sl_ms
    Column("wait_answered_ms", BigInteger, nullable=False),
    Column("wait_abandoned_ms", BigInteger, nullable=False),
    Column("wait_ended_ms", BigInteger, nullable=False),
    Column("wait_ended_n", BigInteger, nullable=False),
    Column("wait_max_ms", BigInteger),
    Column("talk_ms", BigInteger, nullable=False),
    Column("hold_ms", BigInteger, nullable=False),
    Column("wrapup_ms", BigInteger, nullable=False),
    Column("rings_answered", BigInteger, nullable=False),
    Column("ring_answered_ms", BigInteger, nullable=False),
    Column("scored_n", BigInteger, nullable=False),
    Column("score_sum", BigInteger, nullable=False),
    Column("satisfied_n", BigInteger, nullable=False),
    # conversations without a queue stay (a connected callback's talk): handled calls too
    Column("talks_without_stay", BigInteger, nullable=False),
)
Index("ix_rollup_queue_tenant_bucket", rollup_queue.c.tenant, rollup_queue.c.bucket_ms)

# rollup_queue summed over agents: what reports by tenant or queue read (a year of a busy
# center is millions of (bucket, queue, agent) cells but 35,040 buckets x queues here)
rollup_queue_total = Table(
    "rollup_queue_total",
    metadata,
    *[Column(c.name, c.type, nullable=c.nullable) for c in rollup_queue.columns
      if c.name != "agent"],
)
Index("ix_rollup_queue_total_tenant_bucket", rollup_queue_total.c.tenant,
      rollup_queue_total.c.bucket_ms)

rollup_calls = Table(
    "rollup_calls",
    metadata,
    Column("bucket_ms", BigInteger, nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("queue", String(160)),  # the call's first queue
    Column("calls", BigInteger, nullable=False),
    Column("blocked", BigInteger, nullable=False),
    Column("ivr_only", BigInteger, nullable=False),
    Column("queued", BigInteger, nullable=False),
)
Index("ix_rollup_calls_tenant_bucket", rollup_calls.c.tenant, rollup_calls.c.bucket_ms)

# Buckets whose raw rows changed since they were last rolled up (written by triggers).
rollup_changes = Table(
    "rollup_changes",
    metadata,
    Column("tenant", String(128), nullable=False),
    Column("bucket_ms", BigInteger, nullable=False),
)
Index("ix_rollup_changes_tenant_bucket", rollup_changes.c.tenant, rollup_changes.c.bucket_ms)

# The queue thresholds the roll-ups of a tenant were computed with (service level and
# short abandon are counts over thresholds); a report with other thresholds reads raw rows.
rollup_thresholds = Table(
    "rollup_thresholds",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("queue", String(160), primary_key=True),
    Column("sl_ms", BigInteger, nullable=False),
    Column("short_ms", BigInteger, nullable=False),
)
