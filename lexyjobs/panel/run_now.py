"""One-click runs: "Run" on the Jobs list and the dashboard runs a job that needs no input with
its defaults, and "Run again" on a finished run's page runs its job with that run's params — each
answering with a toast that links to the run, so the page stays where it is (the form remains
as "Run with options…"). A duplicate that flow control answers with an existing run (a unique
job's active run) says so in the toast. Without htmx the form goes to the run's page."""
from __future__ import annotations

from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from lexyjobs import actions, runs
from lexyjobs.api.inputs import BadInput
from lexyjobs.definitions import JobDefinition
from lexyjobs.errors import InvalidParams
from lexyjobs.guard import actor
from lexyjobs.panel import bp
from lexyjobs.panel.htmx import wants_partial
from lexyjobs.runtime import current

TOAST_HEADER = "X-Lexyjobs-Toast"  # app.js swaps a refusal (4xx) into the toasts when it carries this


def one_click(definition: JobDefinition | None) -> bool:
    """Whether the job can run without asking anything: every required param has a default."""
    return definition is not None and all(spec.has_default or not spec.required for spec in definition.params.values())


@bp.post("/jobs/<job_name:name>/run-now")
def run_now(name: str) -> BaseResponse | tuple[str, int, dict[str, str]]:
    """Enqueue a manual run of ``name`` with its defaults, or (form field ``from_run``) with the
    params and priority of that finished run of the same job."""
    who = actor()
    who.require("operator")
    definition = current().catalog.get(name)
    params, priority = _source(definition)
    try:
        done = actions.run_job(current().db, who, name, params, priority=priority, trigger="manual")
    except InvalidParams as exc:
        return _refused(definition, exc)
    target = url_for("lexyjobs.panel.run_detail", run_id=done.run_id)
    if not wants_partial():
        if done.existing:
            flash(done.existing.message)
        return redirect(target, code=303)
    if done.existing:
        message = done.existing.message
        return _toast("existing", f"{message[:1].upper()}{message[1:]}.", target, f"Open run #{done.run_id}")
    return _toast("queued", f"Queued run #{done.run_id} of {definition.title}.", target, f"Open run #{done.run_id}")


def _source(definition: JobDefinition) -> tuple[dict[str, Any] | None, int | None]:
    """The params and priority to run with: ``from_run``'s (it must be a run of this job), else
    none given (the defaults apply)."""
    source = request.form.get("from_run", "").strip()
    if not source:
        return None, None
    if not source.isdigit():
        raise BadInput("from_run", "must be a run id (a whole number)")
    run = runs.get_run(current().db, int(source))
    if run.job_name != definition.name:
        raise BadInput("from_run", f"run {run.id} is a run of {run.job_name}, not {definition.name}")
    return dict(run.params or {}), run.priority


def _refused(definition: JobDefinition, exc: InvalidParams) -> BaseResponse | tuple[str, int, dict[str, str]]:
    """The job needs input after all (its params changed, or a hand-made request): say what, and
    link to the form."""
    form = url_for("lexyjobs.panel.run_form", name=definition.name)
    if not wants_partial():
        return redirect(form, code=303)
    problems = "; ".join(f"{name}: {problem}" for name, problem in exc.errors.items())
    html = render_template("lexyjobs/_partials/_run_toast.html", kind="refused",
                           message=f"{definition.title} was not run ({problems}).", link=form, link_text="Run with options…")
    return html, 422, {TOAST_HEADER: "1"}


def _toast(kind: str, message: str, link: str, link_text: str) -> BaseResponse:
    html = render_template("lexyjobs/_partials/_run_toast.html", kind=kind, message=message, link=link, link_text=link_text)
    return Response(html, status=200, headers={TOAST_HEADER: "1"})
