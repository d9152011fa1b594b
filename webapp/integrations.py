"""The admin area for systems outside: webhook subscriptions with their delivery logs, and
the external service tasks' jobs, where an administrator retries an incident."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _

from agency import webhooks
from engine.errors import N_, EngineError
from webapp import get_engine
from webapp.auth import requires
from webapp.i18n import engine_message

bp = Blueprint("integrations", __name__, url_prefix="/admin/integrations")
EVENT_LABELS = {"case_started": N_("案件启动"), "case_ended": N_("案件结束"),
                "task_ready": N_("任务待办"), "task_completed": N_("任务完成"),
                "warning_raised": N_("超期预警"), "message_received": N_("收到消息")}


@bp.route("/")
@requires("admin", "auditor")
def index() -> Any:
    """Subscriptions, and external jobs: incidents first, then open ones."""
    return _page()


def _page(**shown: Any) -> Any:
    engine = get_engine()
    return render_template(
        "admin/integrations.html", subscriptions=webhooks.subscriptions(engine),
        event_types=[(kind, _(EVENT_LABELS[kind])) for kind in webhooks.EVENT_TYPES],
        labels={kind: _(label) for kind, label in EVENT_LABELS.items()},
        incidents=engine.list_jobs(states=("incident",)),
        open_jobs=engine.list_jobs(states=("open",)), **shown)


@bp.route("/webhooks", methods=["POST"])
@requires("admin")
def subscribe() -> Any:
    """Subscribe a URL; its signing secret is shown once, in this answer only.

    The secret is never flashed: a flashed message travels in the session cookie, which is
    signed but readable. The page answering the POST shows it and is not cached."""
    try:
        sub, secret = webhooks.subscribe(get_engine(), request.form.get("url", ""),
                                         request.form.getlist("event_types"), g.user.actor)
    except EngineError as exc:
        flash(engine_message(exc.message))
        return redirect(url_for("integrations.index"))
    response = make_response(_page(new_subscription=sub, new_secret=secret))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/webhooks/<int:subscription_id>/deactivate", methods=["POST"])
@requires("admin")
def deactivate(subscription_id: int) -> Any:
    """Stop sending to a subscription."""
    sub = webhooks.deactivate(get_engine(), subscription_id, g.user.actor)
    flash(_("已停用 %(url)s", url=sub.url))
    return redirect(url_for("integrations.index"))


@bp.route("/webhooks/<int:subscription_id>")
@requires("admin", "auditor")
def delivery_log(subscription_id: int) -> Any:
    """A subscription's latest deliveries with what the receiver answered."""
    sub, deliveries = webhooks.delivery_log(get_engine(), subscription_id)
    return render_template("admin/webhook_log.html", sub=sub, deliveries=deliveries,
                           labels={kind: _(label) for kind, label in EVENT_LABELS.items()})


@bp.route("/jobs/<job_id>/retry", methods=["POST"])
@requires("admin")
def retry(job_id: str) -> Any:
    """Give an incident new retries: workers fetch it again."""
    retries = request.form.get("retries", 3, type=int) or 3
    try:
        job = get_engine().retry_job(job_id, max(1, min(retries, 100)), g.user.actor)
    except EngineError as exc:
        flash(engine_message(exc.message))
    else:
        flash(_("已重试外部任务 %(element)s（案件 %(case)d）", element=job.element,
                case=job.case_id))
    return redirect(url_for("integrations.index"))
