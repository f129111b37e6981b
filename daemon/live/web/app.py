"""The web console and API as one Flask application (routes thin; services shared with the CLI).

JSON API (GET/HEAD only): ``/health``, ``/live``, ``/live/queues/<q>``, ``/live/agents/<a>``,
``/metrics`` (Prometheus text). Console (HTML, read pages): ``/wallboard`` with its live
stream ``/live/stream`` (Server-Sent Events), ``/reports`` (the HTML report of
``daemon/stats/report_html.py`` and its CSV), ``/calls`` and ``/calls/<id>`` (the call
log of ``daemon/storage/calllog.py``), ``/drill`` (``report calls``: the calls behind a
KPI). ``/login`` (GET form, POST) and ``/logout`` (POST with the CSRF token). One write:
``POST /agents/<agent@domain>/<login|logout|break|ready>`` for supervisors and admins,
with the page's CSRF token, through ``daemon.switch.control.agent_action`` (the CLI's
code) and into the audit trail (``audit.py``).

Who sees what (docs/WEB.md): without configured logins everything is open, which the
server allows on loopback only; with logins every route but ``/login`` and
``/static`` needs a session cookie or HTTP Basic credentials, and a tenant-scoped login
sees its tenant only: live JSON, stream, reports, calls, drill-down. ``/health`` and
``/metrics`` cover every tenant, so they need an unscoped login.

Database work (reports, call log, today's figures) runs in a one-thread pool, so a
slow query or a big report never blocks the daemon's hub; matplotlib (pyplot is not
thread-safe) only ever runs in that one thread.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlencode

from flask import Flask, Response, g, redirect, render_template, request
from markupsafe import Markup

from daemon.live.web.auth import LOCAL, Authenticator, Principal, RateLimited

logger = logging.getLogger(__name__)

MAX_TARGET = 1024  # path + query characters; names are short, anything longer is not ours
API_METHODS = ("GET", "HEAD")
SESSION_COOKIE = "hotline_session"
MAX_CALLS_PAGE = 500
WRITE_ROLES = ("admin", "supervisor")
API_PREFIXES = ("/health", "/live", "/metrics")
ENDPOINTS = "/health, /live, /live/queues/<queue>, /live/agents/<agent>"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-src 'self'; "
       "frame-ancestors 'self'; base-uri 'none'")


@dataclass
class WebContext:
    """What the routes read; the daemon and ``hotline web`` fill it differently."""

    snapshot: Callable[[], Mapping[str, Any]]
    center: Any = None
    health: Callable[[], Mapping[str, Any]] | None = None
    auth: Authenticator = field(default_factory=lambda: Authenticator(()))
    hub: Any = None  # stream.LiveHub
    metrics: Callable[[], bytes] | None = None
    db: Any = None  # a SQLAlchemy engine (NullPool) for reports and the call log
    run_db: Callable[..., Any] | None = None  # runs a blocking call off the hub
    tls: bool = False
    control: Callable[[], Any] | None = None  # an ESL command connection (agent actions)
    audit: Any = None  # audit.Audit
    local_csrf: str = field(default_factory=lambda: __import__("secrets").token_urlsafe(24))
    known_queues: frozenset[str] = frozenset()
    known_agents: frozenset[str] = frozenset()
    requests: int = 0
    errors: int = 0


class Reply(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


def json_reply(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None,
               ) -> Response:
    from daemon.live.web.server import encode_json

    return Response(encode_json(body), status=status, headers=dict(headers or {}),
                    content_type="application/json; charset=utf-8")


def _tenant_domain(ctx: WebContext, tenant: str | None) -> str | None:
    if tenant is None or ctx.center is None:
        return tenant
    t = ctx.center.tenant(tenant)
    return t.domain if t is not None else f"{tenant}.invalid"


def scoped_snapshot(ctx: WebContext, principal: Principal) -> dict[str, Any]:
    """The live snapshot cut to the principal's tenant (queues and agents by domain)."""
    snap = dict(ctx.snapshot())
    if principal.tenant is None:
        return snap
    domain = _tenant_domain(ctx, principal.tenant)

    def mine(name: str) -> bool:
        return name.rpartition("@")[2] == domain

    agents = {n: a for n, a in snap.get("agents", {}).items() if mine(n)}
    return {"at_ms": snap["at_ms"], "agents": agents,
            "agents_by_state": {k: [n for n in v if mine(n)] for k, v in
                                snap.get("agents_by_state", {}).items() if any(map(mine, v))},
            "agents_by_status": {k: [n for n in v if mine(n)] for k, v in
                                 snap.get("agents_by_status", {}).items() if any(map(mine, v))},
            "queues": {n: q for n, q in snap.get("queues", {}).items() if mine(n)}}


def client_address(environ: Mapping[str, Any]) -> str:
    """The browser's address; behind a local reverse proxy, the proxy's X-Forwarded-For."""
    peer = str(environ.get("REMOTE_ADDR", ""))
    forwarded = str(environ.get("HTTP_X_FORWARDED_FOR", ""))
    if forwarded and peer in ("127.0.0.1", "::1"):
        return forwarded.split(",")[-1].strip()[:64] or peer
    return peer


def guard(app: Callable[..., Any]) -> Callable[..., Any]:
    """Checks every request before Flask sees it: size, encoding, methods of the API."""

    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        raw_path = str(environ.get("PATH_INFO", ""))
        query = str(environ.get("QUERY_STRING", ""))
        method = str(environ.get("REQUEST_METHOD", ""))
        error: Reply | None = None
        if len(raw_path) + len(query) > MAX_TARGET:
            error = Reply(414, f"the path and query may be at most {MAX_TARGET} characters")
        else:
            try:  # pywsgi decodes %XX as latin-1; names are UTF-8
                path = raw_path.encode("latin-1").decode("utf-8")
            except UnicodeError:
                path, error = "", Reply(400, "the path is not valid UTF-8")
            if error is None and any(ord(c) < 32 or ord(c) == 127 for c in path):
                error = Reply(400, "the path holds control characters")
            if error is None and ("/../" in path + "/" or "\\" in path):
                error = Reply(400, "the path may not climb out of its folder")
            if error is None and path.startswith(API_PREFIXES) and method not in API_METHODS:
                error = Reply(405, f"method {method[:20]} not allowed; the API is read-only "
                                   "(GET)", {"Allow": ", ".join(API_METHODS)})
        if error is not None:
            resp = json_reply(error.status, {"error": error.message, "status": error.status},
                              error.headers)
            _security_headers(resp)
            return resp(environ, start_response)
        return app(environ, start_response)

    return checked


def _security_headers(resp: Response, tls: bool = False) -> Response:
    h = resp.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Frame-Options", "SAMEORIGIN")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Cache-Control", "no-store")
    if tls:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    return resp


def create_app(ctx: WebContext) -> Flask:
    from daemon.live import http_api as api

    app = Flask("daemon.live.web", static_folder="static", template_folder="templates")
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024, MAX_FORM_MEMORY_SIZE=64 * 1024,
                      MAX_FORM_PARTS=20)
    app.jinja_env.undefined = __import__("jinja2").StrictUndefined
    app.extensions["hotline"] = ctx

    def wants_html() -> bool:
        return (not request.path.startswith(API_PREFIXES) or request.path == "/live/stream") \
            and "text/html" in request.headers.get("Accept", "")

    def principal_from_request() -> Principal | None:
        auth = ctx.auth
        if not auth.required:
            return LOCAL
        session = auth.session(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            g.session = session
            return session.principal
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            try:
                name, _, secret = base64.b64decode(header[6:], validate=True).decode(
                    "utf-8").partition(":")
            except (ValueError, UnicodeError):
                raise Reply(400, "the Authorization header is not valid Basic credentials")
            try:
                return auth.check_basic(name, secret, client_address(request.environ))
            except RateLimited as exc:
                raise Reply(429, str(exc), {"Retry-After": str(int(exc.seconds) + 1)})
        return None

    @app.before_request
    def authenticate() -> Any:
        ctx.requests += 1
        g.session = None
        if request.path.startswith("/static/") or request.path == "/login":
            g.principal = None
            return None
        principal = principal_from_request()
        if principal is None:
            if wants_html() and request.method == "GET":
                return redirect("/login?" + urlencode({"next": request.full_path.rstrip("?")}))
            raise Reply(401, "log in first (session cookie or HTTP Basic credentials)",
                        {"WWW-Authenticate": 'Basic realm="hotline", charset="UTF-8"'})
        g.principal = principal
        return None

    @app.after_request
    def headers(resp: Response) -> Response:
        return _security_headers(resp, ctx.tls)

    @app.errorhandler(Reply)
    def reply(exc: Reply) -> Response:
        return json_reply(exc.status, {"error": exc.message, "status": exc.status}, exc.headers)

    @app.errorhandler(404)
    def not_found(_: Any) -> Response:
        return json_reply(404, {"error": f"no such path; the API has {ENDPOINTS}, the console "
                                         "/wallboard, /reports, /calls", "status": 404})

    @app.errorhandler(405)
    def not_allowed(_: Any) -> Response:
        return json_reply(405, {"error": f"method {request.method[:20]} not allowed here",
                                "status": 405})

    @app.errorhandler(413)
    def too_large(_: Any) -> Response:
        return json_reply(413, {"error": "the request is too large", "status": 413})

    @app.errorhandler(400)
    def bad_request(_: Any) -> Response:
        return json_reply(400, {"error": "malformed request", "status": 400})

    @app.errorhandler(Exception)
    def internal(exc: Exception) -> Response:
        ctx.errors += 1
        logger.error("http error path=%r", request.path[:200], exc_info=exc)
        return json_reply(500, {"error": "internal error", "status": 500})

    def unscoped() -> None:
        if g.principal.tenant is not None:
            raise Reply(403, "this covers every tenant; a tenant's login cannot read it")

    # --- JSON API ------------------------------------------------------------------------
    @app.get("/health")
    def health() -> Response:
        unscoped()
        info = dict(ctx.health()) if ctx.health is not None else {"ok": True}
        body = {"ok": bool(info.pop("ok", True)), "at": api.iso_ms(int(time.time() * 1000)),
                **info}
        return json_reply(200 if body["ok"] else 503, body)

    @app.get("/metrics")
    def metrics() -> Response:
        unscoped()
        if ctx.metrics is None:
            raise Reply(404, "no metrics in this process")
        from daemon.live.metrics import CONTENT_TYPE

        return Response(ctx.metrics(), content_type=CONTENT_TYPE)

    @app.get("/live")
    def live() -> Response:
        return json_reply(200, api.snapshot_json(scoped_snapshot(ctx, g.principal)))

    @app.get("/live/queues/<path:name>")
    def live_queue(name: str) -> Response:
        name = name.rstrip("/")
        if "/" in name:
            raise Reply(404, f"no such path; the API has {ENDPOINTS}")
        snap = api.snapshot_json(scoped_snapshot(ctx, g.principal))
        queue = snap["queues"].get(name)
        if queue is None:
            if name not in ctx.known_queues or not _visible(ctx, g.principal, name):
                raise Reply(404, f"no queue {name} (write it qualified: name@domain)")
            queue = {"waiting": [], "count": 0, "oldest_joined_at": None,
                     "longest_wait_ms": None}
        return json_reply(200, {"at": snap["at"], "queue": name, **queue})

    @app.get("/live/agents/<path:name>")
    def live_agent(name: str) -> Response:
        name = name.rstrip("/")
        if "/" in name:
            raise Reply(404, f"no such path; the API has {ENDPOINTS}")
        snap = api.snapshot_json(scoped_snapshot(ctx, g.principal))
        agent = snap["agents"].get(name)
        if agent is None:
            if name not in ctx.known_agents or not _visible(ctx, g.principal, name):
                raise Reply(404, f"no agent {name} (write it qualified: id@domain)")
            agent = {}  # configured, but no status seen yet
        return json_reply(200, {"at": snap["at"], "agent": name, **agent})

    @app.get("/live/stream")
    def live_stream() -> Response:
        if ctx.hub is None:
            raise Reply(404, "no live stream in this process")
        if request.method == "HEAD":  # headers only: no stream (and no slot held) for it
            return Response(b"", content_type="text/event-stream")
        client = ctx.hub.open(g.principal.tenant)
        if client is None:
            raise Reply(503, "too many open live streams; try again later",
                        {"Retry-After": "10"})
        return Response(ctx.hub.stream(client), content_type="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # --- login ---------------------------------------------------------------------------
    @app.get("/login")
    def login_form() -> Any:
        return render_template("login.html", error=None, next=_safe_next(request.args.get(
            "next")), auth_required=ctx.auth.required)

    @app.post("/login")
    def login() -> Any:
        origin = request.headers.get("Origin")
        if origin and origin.split("://", 1)[-1] != request.host:
            raise Reply(403, "the login form was posted from another site")
        name = (request.form.get("user") or "")[:64]
        secret = (request.form.get("secret") or "")[:1024]
        nxt = _safe_next(request.form.get("next"))
        if not ctx.auth.required:
            return redirect(nxt)
        try:
            principal = ctx.auth.check(name, secret, client_address(request.environ))
        except RateLimited as exc:
            return render_template("login.html", error=str(exc), next=nxt,
                                   auth_required=True), 429
        if principal is None:
            return render_template("login.html", error="wrong user or secret", next=nxt,
                                   auth_required=True), 401
        sid, _ = ctx.auth.open_session(principal)
        resp = redirect(nxt)
        resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Strict",
                        secure=ctx.tls or request.headers.get("X-Forwarded-Proto") == "https",
                        path="/")  # no max_age: the server-side session decides expiry
        return resp

    @app.post("/logout")
    def logout() -> Any:
        session = g.get("session")
        if session is not None:
            if request.form.get("csrf") != session.csrf:
                raise Reply(403, "the form's CSRF token does not match the session")
            ctx.auth.close_session(request.cookies.get(SESSION_COOKIE))
        resp = redirect("/login")
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # --- console pages -------------------------------------------------------------------
    def csrf_token() -> str:
        # without logins there is no session: a per-process token still keeps other sites'
        # pages from posting to the loopback console
        session = g.get("session")
        return session.csrf if session is not None else ctx.local_csrf

    def page(template: str, **kw: Any) -> str:
        return render_template(template, principal=g.principal, csrf=csrf_token(),
                               can_control=ctx.control is not None and g.principal.role in
                               WRITE_ROLES, auth_required=ctx.auth.required, **kw)

    @app.post("/agents/<path:agent>/<action>")
    def agent_write(agent: str, action: str) -> Response:
        """Agent login / logout / break / ready: the CLI's code, for supervisors, audited."""
        from daemon.switch.control import AGENT_ACTIONS, ControlError, agent_action

        principal = g.principal
        if request.form.get("csrf") != csrf_token() or (ctx.auth.required
                                                        and g.get("session") is None):
            raise Reply(403, "a write needs a console login and the page's CSRF token")
        if principal.role not in WRITE_ROLES:
            raise Reply(403, f"role {principal.role} may not change agents")
        if action not in AGENT_ACTIONS:
            raise Reply(404, f"no agent action {action[:20]} ({', '.join(AGENT_ACTIONS)})")
        if ctx.control is None or ctx.center is None:
            raise Reply(404, "this process has no switch control")
        if agent not in ctx.known_agents or not _visible(ctx, principal, agent):
            raise Reply(404, f"no agent {agent} (write it qualified: id@domain)")
        reason = (request.form.get("reason") or "").strip()[:64] or None
        address = client_address(request.environ)
        try:
            data = agent_action(ctx.control(), ctx.center, agent, action, reason)
        except ControlError as exc:
            _audit(ctx, principal, action, agent, f"refused: {exc}", reason, address)
            raise Reply(409, str(exc)) from None
        except Exception as exc:  # the switch away: no traceback to the browser
            _audit(ctx, principal, action, agent, f"failed: {exc.__class__.__name__}", reason,
                   address)
            raise Reply(503, f"the switch did not take it: {exc.__class__.__name__}") from None
        _audit(ctx, principal, action, agent,
               f"ok: {data['previous_status']} -> {data['status']}", data.get("reason"), address)
        return json_reply(200, {k: v for k, v in data.items() if k != "commands"})

    @app.get("/")
    def index() -> Any:
        return redirect("/wallboard")

    @app.get("/wallboard")
    def wallboard() -> str:
        return page("wallboard.html")

    @app.get("/reports")
    def reports() -> str:
        form = _report_form(request.args)
        query = urlencode({k: v for k, v in form.items() if v})
        from daemon.stats.intervals import SIZES

        return page("reports.html", form=form, query=query, tenants=_tenant_ids(ctx, g.principal),
                    kpis=_kpi_ids(), intervals=SIZES)

    @app.get("/reports/view")
    def report_view() -> Response:
        req = _report_request(ctx, g.principal, request.args)
        html = _run_db(ctx, _render_report, ctx, req)
        return Response(html, content_type="text/html; charset=utf-8")

    @app.get("/reports/csv")
    def report_csv() -> Response:
        req = _report_request(ctx, g.principal, request.args)
        text = _run_db(ctx, _report_csv, ctx, req)
        return Response(text, content_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="hotline-report.csv"'})

    @app.get("/calls")
    def calls() -> str:
        args = request.args
        start, end = args.get("from", ""), args.get("to", "")
        found = _run_db(ctx, _call_log, ctx, g.principal, start, end, None)
        return page("calls.html", calls=found, start=start, end=end, limit=MAX_CALLS_PAGE)

    @app.get("/calls/<call_id>")
    def call(call_id: str) -> Any:
        found = _run_db(ctx, _call_log, ctx, g.principal, "", "", call_id)
        if not found:
            raise Reply(404, f"no call {call_id}")
        return page("call.html", call=found[0])

    @app.get("/drill")
    def drill() -> str:
        args = request.args
        kpi_id = args.get("kpi", "")
        req = _report_request(ctx, g.principal, args)
        rows = _run_db(ctx, _drill, ctx, req, kpi_id) if kpi_id else []
        return page("drill.html", rows=rows, kpi=kpi_id, form=_report_form(args),
                    kpis=_kpi_ids())

    return app


# --- helpers behind the console routes -------------------------------------------------------

def _visible(ctx: WebContext, principal: Principal, name: str) -> bool:
    return principal.tenant is None or name.rpartition("@")[2] == _tenant_domain(
        ctx, principal.tenant)


def _audit(ctx: WebContext, principal: Principal, action: str, agent: str, outcome: str,
           reason: str | None, address: str) -> None:
    if ctx.audit is not None:
        ctx.audit.record(user=principal.name, role=principal.role, action=f"agent {action}",
                         target=agent, outcome=outcome, address=address,
                         detail={"reason": reason} if reason else None)


def _safe_next(nxt: str | None) -> str:
    """Only a path of this site: ``//evil.example`` or ``https://...`` would be an open redirect."""
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return "/wallboard"
    return nxt[:512]


def _tenant_ids(ctx: WebContext, principal: Principal) -> list[str]:
    if ctx.center is None:
        return []
    return [t.id for t in ctx.center.tenants if principal.sees(t.id)]


def _kpi_ids() -> list[str]:
    from daemon.stats import kpi as K

    return list(K.KPIS)


def _report_form(args: Mapping[str, str]) -> dict[str, str]:
    keys = ("from", "to", "interval", "by", "tenant", "queue", "agent", "kpi")
    out = {k: str(args.get(k, ""))[:100] for k in keys}
    out["interval"] = out["interval"] or "1h"
    out["by"] = out["by"] or "queue"
    return out


def _report_request(ctx: WebContext, principal: Principal, args: Mapping[str, str]) -> Any:
    from daemon.stats.report import ReportRequest

    form = _report_form(args)
    tenant = form["tenant"] or None
    if principal.tenant is not None:
        if tenant is not None and tenant != principal.tenant:
            raise Reply(403, f"this login sees tenant {principal.tenant} only")
        tenant = principal.tenant
    return ReportRequest(start=form["from"] or None, end=form["to"] or None,
                         interval=form["interval"], by=form["by"], tenant=tenant,
                         queue=form["queue"] or None, agent=form["agent"] or None)


def _run_db(ctx: WebContext, fn: Callable[..., Any], *args: Any) -> Any:
    from daemon.stats.report import ReportError

    if ctx.db is None:
        raise Reply(404, "this process has no statistics database")
    try:
        return ctx.run_db(fn, *args) if ctx.run_db is not None else fn(*args)
    except ReportError as exc:
        raise Reply(400, str(exc)) from None
    except ValueError as exc:  # a date the call log cannot read
        raise Reply(400, str(exc)) from None


def _render_report(ctx: WebContext, req: Any) -> str:
    from daemon.stats.report_html import render_html

    with ctx.db.connect() as conn:
        return render_html(conn, ctx.center, req)


def _report_csv(ctx: WebContext, req: Any) -> str:
    from daemon.stats.report import build_report, to_csv

    with ctx.db.connect() as conn:
        return to_csv(build_report(conn, ctx.center, req))


def _drill(ctx: WebContext, req: Any, kpi_id: str) -> list[dict[str, Any]]:
    from daemon.stats.report import drill_calls

    with ctx.db.connect() as conn:
        return drill_calls(conn, ctx.center, req, kpi_id)


def _call_log(ctx: WebContext, principal: Principal, start: str, end: str,
              call_id: str | None) -> list[dict[str, Any]]:
    from daemon.storage.calllog import call_log

    if principal.tenant and ctx.center is not None and ctx.center.tenant(principal.tenant) is None:
        return []  # a login scoped to a tenant the model does not have sees no calls
    if not start and not end and call_id is None:  # the last day by default
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
        start = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    # the same reading of times as `hotline calls`: each call's tenant's clock (CallLogError
    # is a ValueError: a date it cannot read is the user's mistake)
    return call_log(ctx.db.url.render_as_string(hide_password=False), start=start or None,
                    end=end or None, call_id=call_id, center=ctx.center,
                    tenant=principal.tenant or None,
                    limit=MAX_CALLS_PAGE)


def fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


__all__ = ["WebContext", "create_app", "guard", "scoped_snapshot", "Markup"]
