"""The runs of each endpoint's reported model, for the change-point verdicts.

A provider that swaps the model behind an endpoint usually says so in the ``model`` field
of its responses. The analysis splits a suspect's evidence where that label changes
(``analysis._segments``), so it needs each endpoint's runs of one label. Reading every
stored response for that after every cycle would cost what the history costs, so the runs
are kept in ``model_runs`` and extended with the responses stored since (:func:`update`);
a window of the history (``since``/``until``) asks the database for its own runs
(:func:`runs_between`). Responses that report no model are skipped in both.
"""

from __future__ import annotations

__all__ = ["runs", "runs_between", "update"]

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from auditor.store.models import ModelRun, ModelRunsHead, Response

Runs = dict[str, list[tuple[int, str]]]  # endpoint -> [(first seq, model)], in seq order


def _labelled() -> list[Any]:
    return [Response.reported_model.is_not(None), Response.reported_model != ""]


def update(session: Session) -> int:
    """Extends the stored runs with the responses stored since the last update
    (``model_runs_head``); returns how many labelled responses it read. The caller
    commits."""
    head = session.get(ModelRunsHead, 1)
    if head is None:
        head = ModelRunsHead(id=1, seq=0)
        session.add(head)
    after = head.seq
    top = int(session.scalar(select(func.max(Response.seq))) or 0)
    last: dict[int, ModelRun] = {}
    for stored in session.scalars(select(ModelRun).order_by(ModelRun.first_seq)):
        last[stored.endpoint_id] = stored
    q = (select(Response.endpoint_id, Response.seq, Response.reported_model)
         .where(Response.seq > after, Response.seq <= top, *_labelled())
         .order_by(Response.seq))
    n = 0
    for ep, seq, model in session.execute(q.execution_options(yield_per=20000)):
        n += 1
        run = last.get(ep)
        if run is not None and run.model == model:
            run.last_seq = seq
        else:
            last[ep] = ModelRun(endpoint_id=ep, first_seq=seq, last_seq=seq, model=model)
            session.add(last[ep])
    head.seq = max(after, top)
    session.flush()
    return n


def runs(session: Session, names: Mapping[int, str]) -> Runs:
    """The stored runs of these endpoints (id -> name)."""
    out: Runs = defaultdict(list)
    q = (select(ModelRun.endpoint_id, ModelRun.first_seq, ModelRun.model)
         .where(ModelRun.endpoint_id.in_(list(names))).order_by(ModelRun.first_seq))
    for ep, first, model in session.execute(q):
        out[names[ep]].append((first, model))
    return dict(out)


def runs_between(session: Session, names: Mapping[int, str], bounds: Sequence[Any]) -> Runs:
    """The runs within ``bounds`` (conditions on ``Response``), found by the database (a
    window function) without reading every row here."""
    prev = func.lag(Response.reported_model).over(partition_by=Response.endpoint_id,
                                                  order_by=Response.seq)
    sub = (select(Response.endpoint_id, Response.seq, Response.reported_model,
                  prev.label("prev"))
           .where(Response.endpoint_id.in_(list(names)), *bounds, *_labelled()).subquery())
    q = (select(sub.c.endpoint_id, sub.c.seq, sub.c.reported_model)
         .where(or_(sub.c.prev.is_(None), sub.c.prev != sub.c.reported_model))
         .order_by(sub.c.seq))
    out: Runs = defaultdict(list)
    for ep, seq, model in session.execute(q):
        out[names[ep]].append((seq, model))
    return dict(out)
