"""Panel pages: create, edit and delete database jobs (admins), with the cron preview that
validates a schedule as it is typed. Code and jobs.toml jobs are read-only here."""
from __future__ import annotations

import json
from typing import Any

import tomllib
from flask import Response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import actions, store
from lexyjobs.api.inputs import query_int
from lexyjobs.cron import describe, is_dst_change_day, next_fires, parse_schedule, parse_timezone
from lexyjobs.db import utcnow
from lexyjobs.definitions import COMMON_FIELDS, InvalidDefinition
from lexyjobs.errors import Conflict
from lexyjobs.guard import actor
from lexyjobs.kinds import kinds
from lexyjobs.masking import mask_config
from lexyjobs.panel import bp, param_rows
from lexyjobs.panel.htmx import wants_partial
from lexyjobs.registry import dependents_of, editable_job
from lexyjobs.serialize import shown_spec
from lexyjobs.runtime import current

TEXT_FIELDS = ("title", "category", "description", "schedule", "timezone", "timeout", "backoff", "stale_after",
               "expected_duration", "late_after")
NUMBER_FIELDS = ("priority", "max_attempts", "max_concurrency", "max_runs_per_hour")
PREVIEW_FIRES = 5


@bp.route("/jobs/new", methods=["GET", "POST"])
def job_new() -> str | BaseResponse | tuple[str, int]:
    actor().require("admin")
    if request.method != "POST":  # GET, and HEAD (no CSRF check): only show the form
        return _form(None, {"kind": request.args.get("kind", "python")}, {})
    form = _submitted()
    name = request.form.get("name", "").strip()
    try:
        actions.create_job(current().db, actor(), name, _definition(form))
    except (InvalidDefinition, Conflict) as exc:
        return _form(None, {**form, "name": name}, _errors(exc)), 422
    return _done(name)


@bp.route("/jobs/<job_name:name>/edit", methods=["GET", "POST"])
def job_edit(name: str) -> str | BaseResponse | tuple[str, int]:
    actor().require("admin")
    job = _editable(name)
    if request.method != "POST":  # GET, and HEAD (no CSRF check): only show the form
        return _form(name, _fields_of(mask_config(shown_spec(job))), {})
    form = _submitted()
    try:
        actions.update_job(current().db, actor(), name, {**_not_in_form(job.spec), **_definition(form)})
    except (InvalidDefinition, Conflict) as exc:
        return _form(name, form, _errors(exc)), 422
    return _done(name)


@bp.route("/jobs/<job_name:name>/delete", methods=["GET", "POST"])
def job_delete(name: str) -> str | BaseResponse | tuple[str, int]:
    """The confirmation (type the name). A job others depend on is refused here, before any
    name is typed: the page names its dependants and offers no delete button."""
    actor().require("admin")
    with current().db.read() as session:
        editable_job(session, name)
        dependents = dependents_of(session, name)
    if dependents:
        status = 409 if request.method == "POST" else 200
        return render_template("lexyjobs/job_delete.html", name=name, dependents=dependents, error=False), status
    if request.method != "POST":  # GET, and HEAD (no CSRF check): only show the page
        return render_template("lexyjobs/job_delete.html", name=name, dependents=[], error=False)
    if request.form.get("confirm") != name:
        return render_template("lexyjobs/job_delete.html", name=name, dependents=[],
                               error=request.form.get("confirm") is not None), 422
    actions.delete_job(current().db, actor(), name)
    return redirect(url_for("lexyjobs.panel.jobs"))


@bp.get("/jobs/param-row")
def job_param_row() -> str:
    """One more blank parameter row (htmx appends it; the "Add parameter" button comes along,
    out of band, with the next row's index)."""
    index = query_int("index", 0, 0, 500)
    return render_template("lexyjobs/_partials/_param_row.html", index=index, row=param_rows.blank_row(), add_button=True)


@bp.get("/jobs/kind-fields")
def job_kind_fields() -> str:
    """The fields of the chosen kind (htmx swaps them in when the kind changes)."""
    kind = kinds().get(request.args.get("kind", "")) or kinds()["python"]
    return render_template("lexyjobs/_partials/_kind_fields.html", kind=kind, form={}, errors={})


@bp.get("/jobs/cron-preview")
def cron_preview() -> str:
    """The schedule in words and its next fires, or what is wrong with it (htmx, as you type)."""
    text, zone = request.args.get("schedule", "").strip(), request.args.get("timezone", "").strip() or "UTC"
    return render_template("lexyjobs/_partials/_cron_preview.html", **preview(text, zone, utcnow()))


def preview(text: str, zone: str, now: Any) -> dict[str, Any]:
    """``{"error"}`` or ``{"words", "fires": [(time, dst_day)], "zone"}`` for a schedule (pure)."""
    if not text:
        return {"empty": True}
    try:
        tz = parse_timezone(zone)
    except ValueError as exc:
        return {"error": f"timezone: {exc}"}
    try:
        schedule = parse_schedule(text)
    except ValueError as exc:
        return {"error": f"schedule: {exc}"}
    fires = next_fires(schedule, tz, now, PREVIEW_FIRES)
    return {"words": describe(schedule, zone), "zone": zone,
            "fires": [(at, is_dst_change_day(tz, at.date())) for at in fires]}


def _editable(name: str) -> Any:
    with current().db.read() as session:
        return editable_job(session, name)


def _submitted() -> dict[str, Any]:
    """The form as text fields (what is shown again when something is wrong)."""
    form: dict[str, Any] = {key: request.form.get(key, "").strip()
                            for key in (*TEXT_FIELDS, *NUMBER_FIELDS, "kind", "overlap")}
    form["enabled"] = bool(request.form.get("enabled"))
    form["depends_on"] = request.form.getlist("depends_on")
    kind = kinds().get(form["kind"])
    for field in (kind.fields if kind else ()):
        # a checkbox sends nothing when unticked: that is false, not "left out"
        form[f"k_{field}"] = (bool(request.form.get(f"k_{field}")) if field in BOOLEAN
                              else request.form.get(f"k_{field}", "").strip())
    form["param_rows"] = param_rows.rows_from_form(request.form)
    return form


def _definition(form: dict[str, Any]) -> dict[str, Any]:
    """The definition fields from the form: empty fields are left out (defaults apply); numbers,
    kind fields and params are parsed (a parse problem raises InvalidDefinition naming the field)."""
    name = request.form.get("name", "").strip() or "new-job"
    raw: dict[str, Any] = {"kind": form["kind"], "enabled": form["enabled"]}
    raw.update({key: form[key] for key in TEXT_FIELDS if form.get(key)})
    for key in NUMBER_FIELDS:
        if form.get(key):
            raw[key] = _number(name, key, form[key])
    if form.get("overlap"):
        raw["overlap"] = form["overlap"]
    if form["depends_on"]:
        raw["depends_on"] = form["depends_on"]
    for key, value in form.items():
        if key[2:] in BOOLEAN and key.startswith("k_"):
            raw[key[2:]] = value
        elif key.startswith("k_") and value:
            raw[key[2:]] = _structured(name, key[2:], value)
    params = param_rows.schema_from_rows(name, form["param_rows"])
    if params:
        raw["params"] = params
    return raw


FORM_FIELDS = {*TEXT_FIELDS, *NUMBER_FIELDS, "kind", "overlap", "enabled", "depends_on", "params"}


def _not_in_form(spec: dict[str, Any]) -> dict[str, Any]:
    """The stored fields the form has no input for (``alerts``, ``backoff_factor``, ``run_at``…):
    an edit keeps them instead of dropping them."""
    return {key: value for key, value in spec.items() if key in COMMON_FIELDS and key not in FORM_FIELDS}


def _number(job: str, field: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidDefinition(job, field, f"'{text}' is not a whole number") from None


STRUCTURED = {"argv", "headers", "body", "env", "env_passthrough", "prices"}
BOOLEAN = {"verify_tls": True, "stream": True, "cache_shared": False}  # kind fields shown as a checkbox, with their default


def _structured(job: str, field: str, text: str) -> Any:
    """Lists and tables are typed as JSON (``["a", "b"]``, ``{"k": "v"}``) or TOML (``k = "v"``)."""
    if field not in STRUCTURED:
        return text
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise InvalidDefinition(job, field, "must be JSON (e.g. [\"python\", \"run.py\"] or {\"KEY\": \"value\"}) "
                                "or TOML lines (KEY = \"value\")") from None


def _fields_of(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored definition as the form's text fields."""
    form: dict[str, Any] = {key: "" if spec.get(key) is None else str(spec[key]) for key in (*TEXT_FIELDS, *NUMBER_FIELDS)}
    form.update(kind=spec.get("kind", "python"), overlap=spec.get("overlap", ""), enabled=spec.get("enabled", True),
                depends_on=list(spec.get("depends_on", [])))
    kind = kinds().get(form["kind"])
    for field in (kind.fields if kind else ()):
        value = spec.get(field)
        if field in BOOLEAN:
            form[f"k_{field}"] = BOOLEAN[field] if value is None else bool(value)
        else:
            form[f"k_{field}"] = "" if value is None else (json.dumps(value) if field in STRUCTURED else str(value))
    form["param_rows"] = param_rows.rows_from_schema(spec.get("params"))
    return form


def _errors(exc: InvalidDefinition | Conflict) -> dict[str, str]:
    if isinstance(exc, InvalidDefinition):
        field = exc.field or "form"
        return {field: exc.problem}
    return {"name" if "already exists" in exc.message else "form": exc.message}


def _form(name: str | None, form: dict[str, Any], errors: dict[str, str]) -> str:
    with current().db.read() as session:
        others = [j.name for j in store.list_jobs(session) if j.name != name]
        dependents = dependents_of(session, name) if name else []
    kind = kinds().get(form.get("kind", "python")) or kinds()["python"]
    return render_template("lexyjobs/job_form.html", name=name, form=form, errors=errors, others=others, kind=kind,
                           dependents=dependents,
                           kinds=list(kinds()), help=COMMON_FIELDS, param_errors_of=param_rows.error_of,
                           blank_param_row=param_rows.blank_row,
                           preview={"hidden": True} if "schedule" in errors or "timezone" in errors
                           else preview(form.get("schedule", ""), form.get("timezone") or "UTC", utcnow()))


def _done(name: str) -> BaseResponse:
    target = url_for("lexyjobs.panel.job_detail", name=name)
    if wants_partial():
        return Response(status=204, headers={"HX-Redirect": target})
    return redirect(target)
