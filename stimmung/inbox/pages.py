"""The inbox's pages: queues, case detail, actions (single and bulk), CSV export, lead view,
live events. Every handler checks the user's teams first: a case outside them is answered like
a case that does not exist."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from stimmung.inbox import actions
from stimmung.inbox.accounts import User
from stimmung.inbox.present import STATE_COLOURS, cases_csv, line_chart, sla_clock, stacked_bars
from stimmung.inbox.store import BadQuery, CaseQuery, Conflict, NotFound, Unavailable, Versioned
from stimmung.inbox.web import INBOX_ACTIONS, INBOX_PAGE_SECONDS, Inbox, client_of, csrf_ok, flash
from stimmung.schemas.case import Case
from stimmung.schemas.mention import utcnow

FILTERS = ("state", "priority", "brand", "topic", "language", "sentiment", "assignee", "q", "sort")
KEPT_FIELDS = ("text", "colleague", "team")
BULK_ACTIONS = {"claim": "claimed", "assign": "assigned", "close": "closed"}


def _inbox(request: Request) -> Inbox:
    return request.app.state.inbox


def _signed_in(request: Request) -> User | None:
    return _inbox(request).user(request)


def _to_login() -> Response:
    return RedirectResponse("/login", 303)


def _query(request: Request, user: User, queue: str) -> CaseQuery:
    inbox = _inbox(request)
    visible = user.queues(inbox.directory.teams)
    if queue != "all" and queue not in visible:
        raise NotFound(queue)
    params = request.query_params
    values = {name: (params.get(name) or "").strip() or None for name in FILTERS}
    if values["assignee"] == "me":
        values["assignee"] = user.username
    try:
        page = int(params.get("page") or 1)
    except ValueError:
        raise BadQuery("page must be a number") from None
    return CaseQuery(queues=visible if queue == "all" else [queue], state=values["state"] or "active",
                     priority=values["priority"], brand=values["brand"], topic=values["topic"],
                     language=values["language"], sentiment=values["sentiment"], assignee=values["assignee"],
                     q=values["q"], sort=values["sort"] or "newest", page=page, size=inbox.settings.inbox.page_size)


async def home(request: Request) -> Response:
    user = _signed_in(request)
    if user is None:
        return _to_login()
    queues = user.queues(_inbox(request).directory.teams)
    return RedirectResponse(f"/queue/{queues[0]}" if len(queues) == 1 else "/queue/all", 303)


async def queue_page(request: Request) -> Response:
    started = time.perf_counter()
    inbox, user = _inbox(request), _signed_in(request)
    if user is None:
        return _to_login()
    queue = request.path_params["queue"]
    filters = {name: request.query_params.get(name, "") for name in FILTERS}
    context: dict[str, Any] = {"queue": queue, "filters": filters, "rows": [], "total": 0, "page": 1, "pages": 1}
    try:
        query = _query(request, user, queue)
        total, found = await run_in_threadpool(inbox.store.search, query)
    except NotFound:
        return inbox.render(request, "error.html", {"message": f"There is no queue {queue!r} for you."}, 404)
    except BadQuery as err:
        return inbox.render(request, "queue.html", {**context, "error": str(err)}, 422)
    except Unavailable as err:
        return inbox.render(request, "queue.html", {**context, "error": str(err)}, 503)
    now = utcnow()
    rows = [{"v": v, "c": v.case, "clock": sla_clock(v.case, now, inbox.settings.inbox.sla_warn_fraction),
             "age": (now - v.case.created_at).total_seconds()} for v in found]
    pages = max(1, -(-total // query.size))
    export_query = request.url.query
    members = sorted({m for q in query.queues for m in inbox.directory.members(q)})
    response = inbox.render(request, "queue.html", {**context, "rows": rows, "total": total, "page": query.page,
                                                    "pages": pages, "export_query": export_query, "members": members})
    INBOX_PAGE_SECONDS.labels(page="queue").observe(time.perf_counter() - started)
    return response


async def export_csv(request: Request) -> Response:
    inbox, user = _inbox(request), _signed_in(request)
    if user is None:
        return _to_login()
    queue = request.path_params["queue"]
    try:
        query = _query(request, user, queue)
        query.check()
    except NotFound:
        return Response(f"no queue {queue!r} for you", 404)
    except BadQuery as err:
        return Response(str(err), 422)
    await run_in_threadpool(inbox.store.audit, user.username, "export", "ok", via=user.via, queue=queue,
                            detail=str(request.url.query), client=client_of(request))
    name = f"stimmung-cases-{queue}-{utcnow():%Y%m%d-%H%M}.csv"
    return StreamingResponse(cases_csv(inbox.store.export(query, inbox.settings.inbox.export_max_rows)),
                             media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def _case_context(inbox: Inbox, current: Versioned) -> dict[str, Any]:
    case = current.case
    mentions = await run_in_threadpool(inbox.store.mentions, case)
    alerts = await run_in_threadpool(inbox.store.alerts, case)
    return {"v": current, "c": case, "clock": sla_clock(case, utcnow(), inbox.settings.inbox.sla_warn_fraction),
            "mentions": mentions, "alerts": alerts, "members": inbox.directory.members(case.queue),
            "teams": inbox.directory.teams, "kept": {}, "kept_action": None, "error": None}


async def case_page(request: Request) -> Response:
    inbox, user = _inbox(request), _signed_in(request)
    if user is None:
        return _to_login()
    case_id = request.path_params["case_id"]
    try:
        current = await run_in_threadpool(inbox.store.get, case_id, user.queues(inbox.directory.teams))
        context = await _case_context(inbox, current)
    except NotFound:
        return inbox.render(request, "error.html", {"message": f"There is no case {case_id} in your queues."}, 404)
    except Unavailable as err:
        return inbox.render(request, "error.html", {"message": str(err)}, 503)
    return inbox.render(request, "case.html", context)


def _change_for(inbox: Inbox, user: User, action: str, form: Any) -> Callable[[Case], str | None]:
    who = user.username
    text = str(form.get("text") or "")
    changes: dict[str, Callable[[Case], str | None]] = {
        "claim": lambda c: actions.claim(c, who),
        "note": lambda c: actions.note(c, who, text),
        "reply": lambda c: actions.reply(c, who, text),
        "close": lambda c: actions.close(c, who, text),
        "reopen": lambda c: actions.reopen(c, who, text),
        "assign": lambda c: actions.assign(c, who, str(form.get("colleague") or ""), inbox.directory.members(c.queue)),
        "move": lambda c: actions.move(c, who, str(form.get("team") or ""), inbox.directory.teams),
    }
    if action not in changes:
        raise NotFound(action)
    return changes[action]


async def case_action(request: Request) -> Response:
    inbox, user = _inbox(request), _signed_in(request)
    if user is None:
        return _to_login()
    case_id, action = request.path_params["case_id"], request.path_params["action"]
    form = await request.form()
    kept = {name: str(form.get(name) or "") for name in KEPT_FIELDS}
    queues = user.queues(inbox.directory.teams)

    async def again(message: str, status: int, current: Versioned | None = None) -> Response:
        """The case page with the message, and what the user typed still in the form."""
        try:
            current = current or await run_in_threadpool(inbox.store.get, case_id, queues)
            if current is None:
                raise NotFound(case_id)
            context = await _case_context(inbox, current)
        except (NotFound, Unavailable):
            return inbox.render(request, "error.html", {"message": message, "kept": kept}, status)
        return inbox.render(request, "case.html", {**context, "kept": kept, "kept_action": action, "error": message},
                            status)

    if not csrf_ok(request, form):
        INBOX_ACTIONS.labels(action=action, outcome="csrf").inc()
        return await again("The form expired (security token); your text is kept — send it again.", 403)
    try:
        change = _change_for(inbox, user, action, form)
        updated = await run_in_threadpool(inbox.store.change, case_id, str(form.get("version") or ""), queues, change)
    except NotFound:
        return inbox.render(request, "error.html", {"message": f"There is no case {case_id} in your queues."}, 404)
    except actions.ActionRefused as err:
        INBOX_ACTIONS.labels(action=action, outcome="refused").inc()
        await run_in_threadpool(inbox.store.audit, user.username, action, "refused", via=user.via, case_id=case_id,
                                detail=str(err), client=client_of(request))
        return await again(str(err), 422)
    except BadQuery as err:
        return await again(str(err), 422)
    except Conflict as err:
        INBOX_ACTIONS.labels(action=action, outcome="conflict").inc()
        await run_in_threadpool(inbox.store.audit, user.username, action, "conflict", via=user.via, case_id=case_id,
                                detail=str(err), client=client_of(request))
        return await again(f"{err} — nothing was changed; check the case and try again.", 409, err.current)
    except Unavailable as err:
        INBOX_ACTIONS.labels(action=action, outcome="error").inc()
        return inbox.render(request, "error.html", {"message": str(err), "kept": kept}, 503)
    INBOX_ACTIONS.labels(action=action, outcome="done").inc()
    last = updated.case.history[-1]
    await run_in_threadpool(inbox.store.audit, user.username, action, "ok", via=user.via, case_id=case_id,
                            queue=updated.case.queue, detail=last.detail, client=client_of(request))
    flash(request, f"{case_id}: {last.action}{' ' + last.detail if last.detail else ''}", "ok")
    if not user.can_work(updated.case.queue):  # moved to a team the user is not in
        return RedirectResponse(f"/queue/{queues[0] if len(queues) == 1 else 'all'}", 303)
    return RedirectResponse(f"/case/{case_id}", 303)


async def bulk(request: Request) -> Response:
    inbox, user = _inbox(request), _signed_in(request)
    if user is None:
        return _to_login()
    form = await request.form()
    back = str(form.get("back") or "/queue/all")
    back = back if back.startswith("/queue/") and "//" not in back else "/queue/all"
    if not csrf_ok(request, form):
        flash(request, "The form expired (security token); nothing was changed.", "error")
        return RedirectResponse(back, 303)
    action = str(form.get("action") or "")
    if action not in BULK_ACTIONS:
        flash(request, "Choose claim, assign or close for the selected cases.", "error")
        return RedirectResponse(back, 303)
    if action == "assign" and not str(form.get("colleague") or "").strip():
        flash(request, "Choose the colleague to assign the selected cases to; nothing was changed.", "error")
        return RedirectResponse(back, 303)
    queues = user.queues(inbox.directory.teams)
    done, problems = 0, []
    picked = form.getlist("cases")
    if not picked:
        flash(request, "Tick the cases first (or press x on a row); nothing was changed.", "error")
        return RedirectResponse(back, 303)
    for item in picked:
        case_id, _, version = str(item).partition("|")
        try:
            change = _change_for(inbox, user, action, {"colleague": form.get("colleague")})
            await run_in_threadpool(inbox.store.change, case_id, version, queues, change)
        except (actions.ActionRefused, Conflict, NotFound, BadQuery) as err:
            problems.append(str(err) if not isinstance(err, NotFound) else f"no case {case_id}")
            INBOX_ACTIONS.labels(action=action, outcome="refused").inc()
            continue
        except Unavailable as err:
            problems.append(str(err))
            break
        done += 1
        INBOX_ACTIONS.labels(action=action, outcome="done").inc()
        await run_in_threadpool(inbox.store.audit, user.username, action, "ok", via=user.via, case_id=case_id,
                                detail="bulk" + (f" to {form.get('colleague')}" if action == "assign" else ""),
                                client=client_of(request))
    verb = BULK_ACTIONS[action] + (f" to {form.get('colleague')}" if action == "assign" else "")
    flash(request, f"{done} case(s) {verb}." + (f" Not changed: {'; '.join(problems)}" if problems else ""),
          "ok" if not problems else "error")
    return RedirectResponse(back, 303)


async def lead_page(request: Request) -> Response:
    inbox, user = _inbox(request), _signed_in(request)
    if user is None:
        return _to_login()
    teams = user.leads(inbox.directory.teams)
    if not teams:
        return inbox.render(request, "error.html", {"message": "The lead view is for team leads."}, 403)
    try:
        stats = await run_in_threadpool(inbox.store.lead_stats, teams)
    except Unavailable as err:
        return inbox.render(request, "error.html", {"message": str(err)}, 503)
    charts = [stacked_bars("Cases per queue and state (active, and closed in 14 days)", stats["states"],
                           ["open", "in_progress", "done"], STATE_COLOURS)]
    for key, title in (("first_response", "First response"), ("resolution", "Resolution")):
        for pct, label in (("50.0", "median"), ("90.0", "90th percentile")):
            series = stats[key].get(pct, {})
            if series:
                charts.append(line_chart(f"{title} time, {label}, per team and day", stats["days"], series))
    breach_rows = {q: {"first_response": v.get("first_response", 0), "resolution": v.get("resolution", 0)}
                   for q, v in stats["breaches"].items()}
    if breach_rows:
        charts.append(stacked_bars("SLA breaches (cases opened in 14 days)", breach_rows,
                                   ["first_response", "resolution"],
                                   {"first_response": "#e8590c", "resolution": "#c92a2a"}))
    return inbox.render(request, "lead.html", {"teams": teams, "charts": charts, "stats": stats})


async def events(request: Request) -> Response:
    """Server-sent events: each case of the user's queues that changes (or arrives), as JSON."""
    inbox, user = _inbox(request), _signed_in(request)
    if user is None:
        return Response("sign in first", 401)
    queues = user.queues(inbox.directory.teams)
    poll = inbox.settings.inbox.live_poll_s

    async def stream():
        since, sent, quiet = utcnow(), {}, 0.0
        yield "retry: 3000\n\n"
        while True:
            try:
                changed = await run_in_threadpool(inbox.store.changed_since, queues, since)
            except Unavailable:
                yield 'event: unavailable\ndata: {"message": "Elasticsearch does not answer"}\n\n'
                changed = []
            for case in changed:
                stamp = case.updated_at.isoformat()
                since = max(since, case.updated_at)
                if sent.get(case.case_id) == stamp:
                    continue
                sent[case.case_id] = stamp
                data = {"case_id": case.case_id, "queue": case.queue, "state": case.state, "priority": case.priority,
                        "assignee": case.assignee, "title": case.title[:120], "updated_at": stamp}
                yield f"event: case\ndata: {json.dumps(data)}\n\n"
                quiet = 0.0
            quiet += poll
            if quiet >= 15:
                yield ": keep-alive\n\n"  # proxies close idle streams
                quiet = 0.0
            await asyncio.sleep(poll)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/queue/{queue}", queue_page),
        Route("/queue/{queue}/export.csv", export_csv),
        Route("/case/{case_id}", case_page),
        Route("/case/{case_id}/{action}", case_action, methods=["POST"]),
        Route("/bulk", bulk, methods=["POST"]),
        Route("/lead", lead_page),
        Route("/events", events),
    ]
