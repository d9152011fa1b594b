"""The project unit's read-only progress page, and the links the office hands out for it."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _

from agency.enterprise import PHASES, STAGES, EnterpriseLinks, may_manage
from engine.errors import NotFound
from webapp import get_engine
from webapp.auth import requires

bp = Blueprint("enterprise", __name__)
# The unit's pages are private to the link: not cached, not indexed, no referrer.
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
           "X-Robots-Tag": "noindex, nofollow"}


def _links() -> EnterpriseLinks:
    return EnterpriseLinks(get_engine())


def _manager_only() -> None:
    if not may_manage(g.user.actor):
        abort(403)


@bp.route("/p/<token>")
def progress(token: str) -> Any:
    """What the enterprise sees: its project only, with no login and nothing to change."""
    try:
        view = _links().progress(token)
    except NotFound:
        abort(404)  # the same answer as any unknown address: no hint that the link existed
    response = render_template("enterprise/progress.html", view=view, stages=STAGES,
                               phases=PHASES, token=token)
    return response, 200, PRIVATE


@bp.route("/p/<token>/documents/<int:document_id>.pdf")
def document(token: str, document_id: int) -> Any:
    """A document addressed to the project unit (notice, commitment letter, handover...)."""
    try:
        title, pdf = _links().document_pdf(token, document_id)
    except NotFound:
        abort(404)
    response = Response(pdf, mimetype="application/pdf", headers=PRIVATE)
    # ASCII name for old clients, the document's own title for the others (RFC 6266).
    response.headers["Content-Disposition"] = (
        f"attachment; filename=\"document-{document_id}.pdf\"; "
        f"filename*=UTF-8''{quote(title + '.pdf')}")
    return response


@bp.route("/enterprise-links")
@requires("office", "agent")
def projects() -> Any:
    """Projects whose unit may be given a progress link."""
    _manager_only()
    text = request.args.get("q", "")
    return render_template("enterprise/projects.html", projects=_links().projects(text), q=text)


@bp.route("/cases/<int:case_id>/enterprise-links", methods=["GET", "POST"])
@requires("office", "agent")
def links(case_id: int) -> Any:
    """A case's links; creating one shows its address once."""
    _manager_only()
    engine = get_engine()
    case = engine.get_case(case_id)
    new_url = None
    if request.method == "POST":
        token, _link = _links().create(case_id, g.user.actor, request.form.get("recipient", ""))
        new_url = url_for("enterprise.progress", token=token, _external=True)
    return render_template("enterprise/links.html", case=case, links=_links().links(case_id),
                           new_url=new_url), 201 if new_url else 200


@bp.route("/enterprise-links/<int:link_id>/revoke", methods=["POST"])
@requires("office", "agent")
def revoke(link_id: int) -> Any:
    """Stop a link from working."""
    _manager_only()
    link = _links().revoke(link_id, g.user.actor)
    flash(_("链接已撤销，企业再打开将显示“页面不存在”"))
    return redirect(url_for("enterprise.links", case_id=link.case_id))
