"""Creating, editing and deleting database jobs in the panel, and the cron preview."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Callable

import pytest

from lexyjobs import audit, runs, store
from lexyjobs.db import Database
from lexyjobs.panel.job_form import preview
from test_panel_jobs import HX, Panel, login, text  # noqa: F401  (the login fixture)

MakeJob = Callable[..., str]
SHELL = {"name": "nightly", "title": "Nightly export", "kind": "shell", "k_argv": '["echo", "hi"]',
         "schedule": "0 3 * * *", "timezone": "Europe/Berlin", "enabled": "true"}


def spec(db: Database, name: str) -> dict[str, Any]:
    with db.read() as session:
        job = store.get_job(session, name)
    assert job is not None
    return job.spec


def errors(response: Any) -> list[str]:
    return re.findall(r'role="alert">([^<]+)', text(response))


def test_an_admin_creates_a_shell_job(login: Callable[[str], Panel], db: Database) -> None:
    response = login("admin").post("/jobs/new", {**SHELL, "k_env": 'TOKEN = "${SERVICE_TOKEN}"',
                                                 "p_name": ["limit", ""], "p_type": ["integer", "string"],
                                                 "p_default": ["3", ""],
                                                 "priority": "4", "overlap": "skip"})
    assert response.status_code == 302 and response.headers["Location"] == "/jobs/nightly"
    assert spec(db, "nightly") == {"title": "Nightly export", "kind": "shell", "argv": ["echo", "hi"],
                                   "schedule": "0 3 * * *", "timezone": "Europe/Berlin", "enabled": True,
                                   "env": {"TOKEN": "${SERVICE_TOKEN}"}, "priority": 4, "overlap": "skip",
                                   "params": {"limit": {"type": "integer", "default": 3}}}
    assert [e.action for e in audit.search(db, target="nightly").entries] == ["job.create"]


@pytest.mark.parametrize(("change", "message"), [
    ({"schedule": "0 3 * * 9"}, "day-of-week 9 is out of range 0–7 (0 and 7 are Sunday) or sun–sat"),
    ({"schedule": "every fortnight"}, "is not a schedule lexyjobs reads; use every 15m, every 2 hours"),
    ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
    ({"k_argv": "echo hi"}, "must be JSON"),
    ({"priority": "high"}, "'high' is not a whole number"),
    ({"name": "Bad Name"}, "must be 1–100 characters"),
    ({"p_name": "n", "p_type": "colour"}, "colour"),
    ({"p_name": "n", "p_type": "integer", "p_default": "ten"}, "n.default: must be a whole number"),
    ({"p_name": ["n", "n"]}, "n: is named twice"),
    ({"p_default": "orphan"}, "a parameter row without a name"),
])
def test_a_bad_field_is_shown_inline_and_nothing_is_created(login: Callable[[str], Panel], db: Database,
                                                            change: dict[str, str], message: str) -> None:
    response = login("admin").post("/jobs/new", {**SHELL, **change})
    assert response.status_code == 422
    assert any(message in e.replace("&#39;", "'") for e in errors(response)), errors(response)
    with db.read() as session:
        assert store.list_jobs(session) == []
    assert 'value="Nightly export"' in text(response)  # what was typed is kept


def test_a_taken_name_is_a_conflict_on_the_name_field(login: Callable[[str], Panel], make_job: MakeJob) -> None:
    make_job("nightly")
    response = login("admin").post("/jobs/new", SHELL)
    assert response.status_code == 422 and any("already exists" in e for e in errors(response))


def test_depends_on_refuses_a_cycle(login: Callable[[str], Panel], make_job: MakeJob, db: Database) -> None:
    make_job("first")
    make_job("second", depends_on=["first"])
    admin = login("admin")
    form = text(admin.get("/jobs/first/edit"))
    assert '<option>second</option>' in form
    response = admin.post("/jobs/first/edit", {"kind": "python", "k_func": "jobfuncs:noop", "depends_on": ["second"]})
    assert response.status_code == 422 and any("cycle" in e for e in errors(response))
    assert "depends_on" not in spec(db, "first")


def test_editing_keeps_masked_secrets_and_shows_references(login: Callable[[str], Panel], make_job: MakeJob,
                                                           db: Database) -> None:
    make_job("hook", kind="http", url="https://example.invalid/hook",
             headers={"Authorization": "Bearer literal-secret-xyz", "X-Ref": "${HOOK_TOKEN}"})
    admin = login("admin")
    form = text(admin.get("/jobs/hook/edit"))
    assert "literal-secret-xyz" not in form and "****" in form and "${HOOK_TOKEN}" in form
    headers = re.search(r'<textarea id="k_headers" name="k_headers"[^>]*>([^<]*)</textarea>', form).group(1)  # type: ignore[union-attr]
    response = admin.post("/jobs/hook/edit", {"kind": "http", "k_url": "https://example.invalid/hook2",
                                              "k_headers": headers.replace("&#34;", '"').replace("&quot;", '"'),
                                              "k_method": "POST", "enabled": "true"})
    assert response.status_code == 302, errors(response)
    assert spec(db, "hook")["headers"] == {"Authorization": "Bearer literal-secret-xyz", "X-Ref": "${HOOK_TOKEN}"}
    assert spec(db, "hook")["url"] == "https://example.invalid/hook2"


def test_file_jobs_cannot_be_edited_here(login: Callable[[str], Panel], db: Database, tmp_path: Any) -> None:
    from lexyjobs import registry
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('[jobs.from-file]\nkind = "python"\nfunc = "jobfuncs:noop"\n')
    assert registry.sync_jobs(db, jobs_file=str(jobs_file), imports=()).loaded == ["from-file"]
    admin = login("admin")
    assert admin.get("/jobs/from-file/edit").status_code == 409
    assert "in the jobs file" in text(admin.post("/jobs/from-file/edit", {"kind": "python", "k_func": "x:y"}))
    assert admin.post("/jobs/from-file/delete", {"confirm": "from-file"}).status_code == 409
    assert spec(db, "from-file") == {"kind": "python", "func": "jobfuncs:noop"}


def test_only_admins_reach_the_form(login: Callable[[str], Panel], make_job: MakeJob) -> None:
    make_job("guarded")
    operator = login("operator")
    assert operator.get("/jobs/new").status_code == 403
    assert operator.get("/jobs/guarded/edit").status_code == 403
    assert operator.post("/jobs/new", SHELL).status_code == 403
    assert operator.post("/jobs/guarded/delete", {"confirm": "guarded"}).status_code == 403
    assert 'href="/jobs/new"' not in text(operator.get("/jobs"))
    assert 'href="/jobs/new"' in text(login("admin").get("/jobs"))


def test_delete_needs_the_name_typed(login: Callable[[str], Panel], make_job: MakeJob, db: Database) -> None:
    make_job("doomed")
    runs.enqueue(db, "doomed")
    admin = login("admin")
    assert admin.post("/jobs/doomed/delete", {"confirm": "doome"}).status_code == 422
    assert admin.post("/jobs/doomed/delete").status_code == 422
    with db.read() as session:
        assert store.get_job(session, "doomed") is not None
    response = admin.post("/jobs/doomed/delete", {"confirm": "doomed"})
    assert response.status_code == 302 and response.headers["Location"] == "/jobs"
    with db.read() as session:
        assert store.get_job(session, "doomed") is None
    assert [e.action for e in audit.search(db, target="doomed").entries] == ["job.delete"]


def test_deleting_a_job_others_depend_on_is_refused_before_the_name_is_typed(
        login: Callable[[str], Panel], make_job: MakeJob, db: Database) -> None:
    make_job("extract")
    make_job("transform", depends_on=["extract"])
    make_job("load", depends_on=["extract", "transform"])
    admin = login("admin")
    for page in (text(admin.get("/jobs/extract/delete")), text(admin.get("/jobs/extract/edit"))):
        assert "<code>extract</code> cannot be deleted: these jobs depend on it." in page
        assert '<a href="/jobs/load">load</a>' in page and '<a href="/jobs/transform">transform</a>' in page
        assert 'name="confirm"' not in page and ">Delete</button>" not in page
    response = admin.post("/jobs/extract/delete", {"confirm": "extract"})  # a stale form: still refused, no 500
    assert response.status_code == 409 and "cannot be deleted" in text(response)
    with db.read() as session:
        assert store.get_job(session, "extract") is not None
    single = text(admin.get("/jobs/transform/delete"))
    assert "<code>transform</code> cannot be deleted: this job depends on it." in single
    assert "Remove <code>transform</code> from its <code>depends_on</code> first" in single
    lonely = text(admin.get("/jobs/load/delete"))  # nothing depends on it: the name box
    assert 'name="confirm"' in lonely and ">Delete</button>" in lonely and "cannot be deleted" not in lonely
    assert login("operator").get("/jobs/load/delete").status_code == 403


def test_the_kind_fields_swap_with_the_kind(login: Callable[[str], Panel]) -> None:
    admin = login("admin")
    fields = text(admin.get("/jobs/kind-fields?kind=http", headers=HX))
    assert 'name="k_url"' in fields and 'name="k_method"' in fields and 'name="k_argv"' not in fields
    assert 'name="k_func"' in text(admin.get("/jobs/kind-fields?kind=bogus", headers=HX))
    openai = text(admin.get("/jobs/kind-fields?kind=openai", headers=HX))
    assert '<textarea id="k_prompt"' in openai and '<textarea id="k_system"' in openai  # prompts keep their lines


def test_verify_tls_is_a_checkbox_whose_value_round_trips(login: Callable[[str], Panel], make_job: MakeJob,
                                                         db: Database) -> None:
    admin = login("admin")
    checkbox = re.compile(r'<input type="checkbox" id="k_verify_tls" name="k_verify_tls" value="true"( checked)?>')
    new = checkbox.search(text(admin.get("/jobs/kind-fields?kind=http", headers=HX)))
    assert new is not None and new.group(1) == " checked"  # true by default, as the kind says
    assert 'name="k_verify_tls" value=""' not in text(admin.get("/jobs/new?kind=http"))  # no text box
    make_job("self-signed", kind="http", url="https://10.0.0.5/hook", verify_tls=False)
    shown = checkbox.search(text(admin.get("/jobs/self-signed/edit")))
    assert shown is not None and shown.group(1) is None  # the saved false shows unticked
    form = {"kind": "http", "k_url": "https://10.0.0.5/hook", "k_method": "GET", "enabled": "true"}
    assert admin.post("/jobs/self-signed/edit", form).status_code == 302  # saved unticked: stays false
    assert spec(db, "self-signed")["verify_tls"] is False
    assert admin.post("/jobs/self-signed/edit", {**form, "k_verify_tls": "true"}).status_code == 302
    assert spec(db, "self-signed")["verify_tls"] is True
    shown = checkbox.search(text(admin.get("/jobs/self-signed/edit")))
    assert shown is not None and shown.group(1) == " checked"
    response = admin.post("/jobs/new", {**form, "name": "strict", "k_verify_tls": "true"})
    assert response.status_code == 302 and spec(db, "strict")["verify_tls"] is True
    bad = admin.post("/jobs/new", {**form, "name": "Bad Name"})  # a refused form keeps the box unticked
    shown = checkbox.search(text(bad))
    assert bad.status_code == 422 and shown is not None and shown.group(1) is None


def test_help_texts_show_code_spans_as_code_not_backticks(login: Callable[[str], Panel], make_job: MakeJob) -> None:
    admin = login("admin")
    form = text(admin.get("/jobs/new?kind=http"))
    assert "<code>http://</code> or <code>https://</code> URL; may use <code>${ENV}</code>" in form  # kind field help
    assert "cron (<code>0 */6 * * *</code>)" in form  # the schedule's help, from the definition fields
    labels = re.findall(r'<span class="sub">([^\n]*?)</span></label>', form)
    assert labels and not [label for label in labels if "`" in label], labels
    make_job("documented", description="Reads `orders.csv` <daily>",
             params={"limit": {"type": "integer", "help": "at most `n` rows"}})
    page = text(admin.get("/jobs/documented"))
    assert "Reads <code>orders.csv</code> &lt;daily&gt;" in page and "at most <code>n</code> rows" in page
    run_form = text(admin.get("/jobs/documented/run"))
    assert "at most <code>n</code> rows" in run_form and "Reads <code>orders.csv</code> &lt;daily&gt;" in run_form


def test_the_cron_preview_describes_and_lists_next_fires(login: Callable[[str], Panel]) -> None:
    admin = login("admin")
    good = text(admin.get("/jobs/cron-preview?schedule=*/15+*+*+*+*&timezone=UTC", headers=HX))
    assert "Every 15 minutes" in good and good.count("<li>") == 5
    bad = text(admin.get("/jobs/cron-preview?schedule=every+banana", headers=HX))
    assert 'role="alert"' in bad and "schedule" in bad
    assert "runs only when started by hand" in text(admin.get("/jobs/cron-preview?schedule=", headers=HX))


def test_the_preview_flags_dst_change_days() -> None:
    now = datetime(2025, 3, 28, 12, 0, tzinfo=timezone.utc)  # Berlin moves to summer time on Sunday 30 March
    shown = preview("30 2 * * *", "Europe/Berlin", now)
    flagged = [at.date().isoformat() for at, dst in shown["fires"] if dst]
    assert len(shown["fires"]) == 5 and flagged == ["2025-03-30"]
    assert "Europe/Berlin" in shown["words"]
    assert preview("30 2 * * *", "Nowhere/Land", now)["error"].startswith("timezone:")


PARAMS = {"limit": {"type": "integer", "default": 10, "min": 1, "max": 500, "help": "rows per batch", "required": True},
          "mode": {"type": "choice", "choices": ["fast", "full"], "default": "full"},
          "level": {"type": "choice", "choices": [1, 2, 3], "default": 2},
          "ratio": {"type": "number", "default": 0.5},
          "dry_run": {"type": "boolean", "default": False},
          "extra": {"type": "json", "default": {"tags": ["a", "b"]}},
          "note": {"type": "string"}}


def form_fields(html: str) -> dict[str, list[str]]:
    """What a browser would post from the form: every named input, select and ticked box."""
    fields: dict[str, list[str]] = {}
    for tag in re.findall(r"<select\b[^>]*>.*?</select>|<input\b[^>]*>", html, re.S):
        name = re.search(r'name="([^"]+)"', tag)
        if name is None or ('type="checkbox"' in tag and " checked" not in tag):
            continue
        if tag.startswith("<select"):
            chosen = re.findall(r'<option( value="([^"]*)")? selected>([^<]*)', tag)
            values = [value if attribute else label for attribute, value, label in chosen]
        else:
            value = re.search(r'value="([^"]*)"', tag)
            values = [value.group(1) if value else ""]
        fields.setdefault(name.group(1), []).extend(v.replace("&#34;", '"').replace("&quot;", '"') for v in values)
    return fields


def test_the_parameter_editor_shows_each_parameter_as_a_row_and_saves_it_back(
        login: Callable[[str], Panel], make_job: MakeJob, db: Database) -> None:
    make_job("batch", params={**PARAMS, "retries": 3})  # a shorthand entry too
    admin = login("admin")
    page = text(admin.get("/jobs/batch/edit"))
    posted = form_fields(page)
    assert sorted(posted["p_name"][:-1]) == sorted([*PARAMS, "retries"]) and posted["p_name"][-1] == ""  # a blank row
    rows = {name: (kind, default) for name, kind, default in zip(posted["p_name"], posted["p_type"], posted["p_default"])}
    assert rows == {"limit": ("integer", "10"), "mode": ("choice", "full"), "level": ("choice", "2"),
                    "ratio": ("number", "0.5"), "dry_run": ("boolean", "false"), "extra": ("json", '{"tags": ["a", "b"]}'),
                    "note": ("string", ""), "retries": ("integer", "3"), "": ("string", "")}
    assert posted["p_required"] == [str(posted["p_name"].index("limit"))]
    posted.pop("csrf_token", None)
    response = admin.post("/jobs/batch/edit", posted)
    assert response.status_code == 302, errors(response)
    assert spec(db, "batch")["params"] == {**PARAMS, "retries": {"type": "integer", "default": 3}}


def test_a_new_parameter_row_comes_with_the_next_add_button(login: Callable[[str], Panel]) -> None:
    fragment = text(login("admin").get("/jobs/param-row?index=4", headers=HX))
    assert fragment.count('<tr class="param-row">') == 1 and 'name="p_required" value="4"' in fragment
    assert 'id="param-add" class="small" hx-swap-oob="true"' in fragment and "index=5" in fragment


def test_a_job_without_parameters_saves_none(login: Callable[[str], Panel], db: Database) -> None:
    response = login("admin").post("/jobs/new", {**SHELL, "p_name": "", "p_type": "string", "p_default": ""})
    assert response.status_code == 302 and "params" not in spec(db, "nightly")


def test_editing_keeps_the_fields_the_form_does_not_show(login: Callable[[str], Panel], make_job: MakeJob,
                                                         db: Database) -> None:
    hidden = {"alerts": {"events": ["failed"], "slack": "${SLACK_HOOK}"}, "backoff_factor": 3, "idempotent": False,
              "misfire_grace": "10m"}
    make_job("nightly", kind="shell", argv=["echo", "hi"], title="Old title", **hidden)
    response = login("admin").post("/jobs/nightly/edit", {**SHELL, "title": "New title"})
    assert response.status_code == 302, errors(response)
    stored = spec(db, "nightly")
    assert stored["title"] == "New title" and {key: stored.get(key) for key in hidden} == hidden


SHOWN = ("form", "config", "list", "api", "api_definition")


def _enabled_shown(admin: Panel, api_client: Any, name: str) -> dict[str, bool]:
    """How paused-or-enabled the job is shown: edit form's box, configuration, jobs list, API."""
    form = text(admin.get(f"/jobs/{name}/edit"))
    box = re.search(r'<input type="checkbox" name="enabled"[^>]*>', form)
    assert box
    page = text(admin.get(f"/jobs/{name}"))
    config = re.search(r"<code>enabled</code></th>\s*<td><code>(\w+)</code>", page)
    assert config
    listed = text(admin.get("/jobs"))
    at = listed.index(f"<code>{name}</code>")
    row = listed[listed.rindex("<tr", 0, at):].split("</tr>")[0]
    job = api_client.ok(api_client.get(f"/api/jobs/{name}", role="viewer"))
    return {"form": "checked" in box.group(0), "config": config.group(1) == "true",
            "list": "paused-badge" not in row, "api": job["enabled"], "api_definition": job["definition"]["enabled"]}


def test_paused_and_enabled_are_one_truth_shown_the_same_everywhere(
        login: Callable[[str], Panel], make_job: MakeJob, db: Database, api_client: Any) -> None:
    make_job("nightly-sync", schedule="0 3 * * *", enabled=True)
    admin = login("admin")
    assert admin.post("/jobs/nightly-sync/pause").status_code == 302
    assert _enabled_shown(admin, api_client, "nightly-sync") == dict.fromkeys(SHOWN, False)
    assert admin.post("/jobs/nightly-sync/resume").status_code == 302
    assert _enabled_shown(admin, api_client, "nightly-sync") == dict.fromkeys(SHOWN, True)
    unticked = admin.post("/jobs/nightly-sync/edit", {"kind": "python", "k_func": "jobfuncs:noop",
                                                      "schedule": "0 3 * * *"})
    assert unticked.status_code == 302, errors(unticked)
    assert _enabled_shown(admin, api_client, "nightly-sync") == dict.fromkeys(SHOWN, False)
    assert admin.post("/jobs/nightly-sync/resume").status_code == 302
    assert _enabled_shown(admin, api_client, "nightly-sync") == dict.fromkeys(SHOWN, True)
    assert spec(db, "nightly-sync")["enabled"] is True
    assert admin.post("/jobs/nightly-sync/pause").status_code == 302
    api_client.ok(api_client.put("/api/jobs/nightly-sync", role="admin", json={"kind": "python", "func": "jobfuncs:noop",
                                                                                  "schedule": "0 3 * * *"}))
    assert _enabled_shown(admin, api_client, "nightly-sync") == dict.fromkeys(SHOWN, False)  # still paused
    ticked = admin.post("/jobs/nightly-sync/edit", {"kind": "python", "k_func": "jobfuncs:noop",
                                                    "schedule": "0 3 * * *", "enabled": "true"})
    assert ticked.status_code == 302, errors(ticked)
    assert _enabled_shown(admin, api_client, "nightly-sync") == dict.fromkeys(SHOWN, True)


def test_the_health_signal_bounds_are_saved_and_a_bad_one_is_shown_inline(login: Callable[[str], Panel],
                                                                          db: Database) -> None:
    admin = login("admin")
    page = text(admin.get("/jobs/new"))
    for field in ("expected_duration", "max_runs_per_hour", "late_after"):
        assert f'name="{field}"' in page, field
    refused = admin.post("/jobs/new", {**SHELL, "expected_duration": "40m..10m"})
    assert refused.status_code == 422
    assert any("ends before it starts" in e.replace("&#39;", "'") for e in errors(refused)), errors(refused)
    saved = admin.post("/jobs/new", {**SHELL, "expected_duration": "10m..40m", "max_runs_per_hour": "2",
                                     "late_after": "20m"})
    assert saved.status_code == 302, errors(saved)
    assert {k: spec(db, "nightly")[k] for k in ("expected_duration", "max_runs_per_hour", "late_after")} == {
        "expected_duration": "10m..40m", "max_runs_per_hour": 2, "late_after": "20m"}
    assert 'value="10m..40m"' in text(admin.get("/jobs/nightly/edit"))
