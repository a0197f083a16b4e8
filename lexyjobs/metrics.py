"""``GET /metrics`` for Prometheus: who may read it, and the answer (``lexyjobs.prometheus``
reads the database and builds the metric families; it is imported on the first scrape).

Access: ``LEXYJOBS_METRICS_PUBLIC=true`` opens it to anyone; otherwise a bearer token —
``LEXYJOBS_METRICS_TOKEN``, an API token or ``LEXYJOBS_API_TOKEN`` — or a panel login, with at
least the ``viewer`` role. Refusals: 401 (no or unknown credentials), 403 (role too low)."""
from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Flask, Response, jsonify, request, session
from sqlalchemy.exc import SQLAlchemyError

from lexyjobs import accounts
from lexyjobs.accounts import Identity
from lexyjobs.config import Settings
from lexyjobs.db import Database
from lexyjobs.guard import public
from lexyjobs.runtime import current

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)


# ---------------------------------------------------------------- GET /metrics


@bp.get("/metrics", provide_automatic_options=False)  # the guard lets public routes' OPTIONS through
@public  # the guard lets it through; it checks its own credentials (tokens, session, or public)
def metrics() -> Response | tuple[Response, int]:
    lexy = current()
    refusal = _refusal(lexy.settings, lexy.db)
    if refusal is not None:
        return refusal
    from lexyjobs.prometheus import exposition  # on the first scrape: see the module docstring

    try:
        body, content_type = exposition(lexy.db, lexy.settings, request.headers.get("Accept", ""))
    except SQLAlchemyError:
        log.exception("metrics: could not read the database")
        return _error(503, "database_unavailable", "the database did not answer; see the server log")
    return Response(body, content_type=content_type)


def _refusal(settings: Settings, db: Database) -> tuple[Response, int] | None:
    """None when the request may read the metrics, else the 401/403 answer."""
    if settings.metrics_public:
        return None
    who = _bearer_identity(settings, db) or _session_identity(db)
    if who is None:
        return _error(401, "unauthorized", "send 'Authorization: Bearer <token>' (LEXYJOBS_METRICS_TOKEN or an API "
                                           "token), or log in to the panel")
    if not who.can("viewer"):
        return _error(403, "forbidden", "the metrics need at least the viewer role")
    return None


def _bearer_identity(settings: Settings, db: Database) -> Identity | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    if settings.metrics_token and hmac.compare_digest(token.encode(), settings.metrics_token.encode()):
        return Identity("metrics", "viewer", "token")
    return accounts.token_identity(db, token, env_token=settings.api_token)


def _session_identity(db: Database) -> Identity | None:
    uid, epoch = session.get("lexyjobs_uid"), session.get("lexyjobs_epoch")
    if not isinstance(uid, int) or not isinstance(epoch, int):
        return None
    return accounts.session_identity(db, uid, epoch)


def _error(status: int, code: str, message: str) -> tuple[Response, int]:
    response = jsonify(error={"code": code, "message": message, "details": None})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="lexyjobs"'
    return response, status


def init_app(app: Flask, parent: Blueprint) -> None:
    parent.register_blueprint(bp)
