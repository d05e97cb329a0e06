"""One tag per OSF, enforced by the database itself."""

from __future__ import annotations

import threading

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qvd.db import DatabaseTarget
from qvd.db.models import Di, DiRuntime, DiTag, Osf


def _osf_with_dis(session: Session, name: str, count: int) -> tuple[Osf, list[Di]]:
    osf = Osf(tenant_id=1, name=name)
    session.add(osf)
    session.flush()
    dis = [Di(osf_id=osf.id, path=f"{name}-{i}.tar.zst", version=f"v{i}") for i in range(count)]
    session.add_all(dis)
    session.flush()
    return osf, dis


def test_a_tag_gets_its_dis_osf(session: Session) -> None:
    osf, (di,) = _osf_with_dis(session, "desk", 1)
    tag = DiTag(di_id=di.id, tag="head")
    session.add(tag)
    session.flush()
    session.refresh(tag)
    assert tag.osf_id == osf.id
    assert session.get(DiRuntime, di.id) is not None  # runtime row made by trigger


def test_the_same_tag_twice_in_one_osf_is_refused(session: Session) -> None:
    _, (di1, di2) = _osf_with_dis(session, "desk", 2)
    session.add(DiTag(di_id=di1.id, tag="default"))
    session.flush()
    session.add(DiTag(di_id=di2.id, tag="default"))
    with pytest.raises(IntegrityError, match="uq_di_tags_osf_id_tag"):
        session.flush()


def test_the_same_tag_in_two_osfs_is_fine_and_moving_works(session: Session) -> None:
    _, (a1, a2) = _osf_with_dis(session, "desk", 2)
    _, (b1,) = _osf_with_dis(session, "kiosk", 1)
    session.add_all([DiTag(di_id=a1.id, tag="default"), DiTag(di_id=b1.id, tag="default")])
    session.flush()
    tag = session.scalars(select(DiTag).where(DiTag.di_id == a1.id)).one()
    tag.di_id = a2.id  # roll forward: move the tag to the other DI of the same OSF
    session.flush()
    session.refresh(tag)
    assert (tag.di_id, tag.osf_id) == (a2.id, a2.osf_id)


def test_a_tag_cannot_claim_another_osf(session: Session) -> None:
    _, (a1,) = _osf_with_dis(session, "desk", 1)
    other, _ = _osf_with_dis(session, "kiosk", 1)
    tag = DiTag(di_id=a1.id, tag="x")
    session.add(tag)
    session.flush()
    # even a writer that bypasses the trigger's column cannot lie about the OSF
    session.connection().exec_driver_sql("ALTER TABLE di_tags DISABLE TRIGGER di_tags_osf")
    tag.osf_id = other.id
    with pytest.raises(IntegrityError, match="fk_di_tags_di_osf"):
        session.flush()


def test_concurrent_writers_cannot_both_take_a_tag(db: DatabaseTarget, session: Session) -> None:
    _, (di1, di2) = _osf_with_dis(session, "desk", 2)
    session.commit()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def writer(di_id: int) -> None:
        with db.connect() as conn:
            barrier.wait()
            try:
                conn.execute("INSERT INTO di_tags (di_id, tag) VALUES (%s, 'head')", [di_id])
                conn.commit()
                outcomes.append("ok")
            except psycopg.errors.UniqueViolation:
                outcomes.append("refused")

    threads = [threading.Thread(target=writer, args=(d.id,)) for d in (di1, di2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["ok", "refused"]
