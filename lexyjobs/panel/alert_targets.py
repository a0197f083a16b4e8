"""Settings → Notifications: the alert targets (admins). Environment targets are listed read-only
with the variable they come from; panel targets are added, edited, tested and removed here
(lexyjobs.alerts.target_forms: checks, audit entries). A stored URL or signing secret never goes
back to the browser: the form shows the URL's host followed by "…", and an empty field keeps
the stored value. "Send a test alert" answers with what the target said, swapped in by htmx."""
from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs.alerts.notifiers import Answer
from lexyjobs.alerts.target_forms import InvalidTarget, add, lookup, parse, remove, send_test, update
from lexyjobs.alerts.targets import KIND_LABELS, KINDS, Target, environment_targets, panel_targets
from lexyjobs.config import ALERT_EVENTS
from lexyjobs.errors import Conflict, NotFound
from lexyjobs.guard import actor
from lexyjobs.panel import bp
from lexyjobs.panel.htmx import wants_partial
from lexyjobs.panel.settings import Page, settings_page
from lexyjobs.runtime import current

FORM_ERRORS = (InvalidTarget, Conflict, NotFound)
KEPT_FIELDS = ("kind", "name", "email", "after_failures", "jobs", "categories", "enabled")  # never url or secret


def context(*, edit: int | None = None, confirm: int | None = None, error: str | None = None,
            error_field: str | None = None, form: dict[str, Any] | None = None,
            answers: dict[str, Answer] | None = None) -> dict[str, Any]:
    """What the Notifications section shows: every target, and the add or edit form's state."""
    lexy = current()
    panel = panel_targets(lexy.db, lexy.settings)
    by_id = {t.id: t for t in panel}
    editing = by_id.get(edit) if edit is not None else None
    return {"environment": environment_targets(lexy.settings), "panel": panel, "kinds": KINDS,
            "kind_labels": KIND_LABELS, "events": ALERT_EVENTS, "editing": editing,
            "confirm": by_id.get(confirm) if confirm is not None else None, "error": error,
            "error_field": error_field, "form": form if form is not None else _form_of(editing),
            "answers": answers or {}, "smtp_host": lexy.settings.smtp_host}


def _form_of(target: Target | None) -> dict[str, Any]:
    if target is None:
        return {"kind": "webhook", "after_failures": "1", "events": list(ALERT_EVENTS), "enabled": "on"}
    return {"kind": target.kind, "name": target.name, "email": ", ".join(target.email),
            "after_failures": str(target.after_failures), "jobs": ", ".join(target.jobs),
            "categories": ", ".join(target.categories), "events": list(target.events),
            "enabled": "on" if target.enabled else ""}


def _typed() -> dict[str, Any]:
    """What was submitted, to show again with a refusal (never the URL or the secret)."""
    kept: dict[str, Any] = {name: request.form.get(name, "") for name in KEPT_FIELDS}
    kept["events"] = request.form.getlist("events")
    return kept


def _refused(exc: InvalidTarget | Conflict | NotFound, *, edit: int | None = None) -> Page:
    field = exc.details.get("field") if isinstance(exc.details, dict) else None
    alerts = context(edit=edit, error=exc.message, error_field=field, form=_typed())
    if edit is not None and alerts["editing"] is None:
        alerts = context(error=exc.message)
    return settings_page(alert_targets=alerts), exc.status_code


def _done(message: str) -> BaseResponse:
    flash(message)
    return redirect(url_for("lexyjobs.panel.settings", _anchor="notifications"), code=303)


@bp.post("/settings/alert-targets")
def alert_target_add() -> BaseResponse | Page:
    who = actor()
    who.require("admin")
    lexy = current()
    try:
        target = parse(request.form, request.form.getlist("events"), lexy.db, lexy.settings)
        add(lexy.db, who, target, lexy.settings)
    except FORM_ERRORS as exc:
        return _refused(exc)
    return _done(f"Added the alert target {target.name}. Every process uses it from its next check (within seconds).")


@bp.post("/settings/alert-targets/<int:target_id>")
def alert_target_edit(target_id: int) -> BaseResponse | Page:
    who = actor()
    who.require("admin")
    lexy = current()
    try:
        existing = lookup(lexy.db, lexy.settings, target_id)
        target = parse(request.form, request.form.getlist("events"), lexy.db, lexy.settings, existing=existing)
        update(lexy.db, who, existing, target, lexy.settings)
    except FORM_ERRORS as exc:
        return _refused(exc, edit=target_id)
    return _done(f"Saved the alert target {target.name}.")


@bp.route("/settings/alert-targets/<int:target_id>/remove", methods=["GET", "POST"])
def alert_target_remove(target_id: int) -> BaseResponse | Page:
    """GET (or a POST without ``confirm=yes``) asks first; the confirmed POST removes."""
    who = actor()
    who.require("admin")
    lexy = current()
    try:
        target = lookup(lexy.db, lexy.settings, target_id)
    except NotFound as exc:
        return _refused(exc)
    if request.method != "POST" or request.form.get("confirm") != "yes":
        return settings_page(alert_targets=context(confirm=target_id))
    remove(lexy.db, who, target)
    return _done(f"Removed the alert target {target.name}.")


@bp.post("/settings/alert-targets/<int:target_id>/test")
def alert_target_test(target_id: int) -> BaseResponse | Page:
    lexy = current()
    actor().require("admin")
    try:
        target = lookup(lexy.db, lexy.settings, target_id)
    except NotFound as exc:
        return _refused(exc)
    return _tested(target)


@bp.post("/settings/alert-targets/environment/<kind>/test")
def alert_target_test_environment(kind: str) -> BaseResponse | Page:
    lexy = current()
    actor().require("admin")
    found = {t.kind: t for t in environment_targets(lexy.settings)}
    if kind not in found:
        return _refused(NotFound(f"no {kind} target is set in the environment"))
    return _tested(found[kind])


def _tested(target: Target) -> Page:
    lexy = current()
    answer = send_test(lexy.db, actor(), target, lexy.settings)
    key = answer_key(target)
    if wants_partial():
        return render_template("lexyjobs/_partials/_alert_target_answer.html", answer=answer, key=key)
    return settings_page(alert_targets=context(answers={key: answer}))


def answer_key(target: Target) -> str:
    """The id of the element that shows a target's test answer."""
    return f"answer-{target.id}" if target.id is not None else f"answer-env-{target.kind}"
