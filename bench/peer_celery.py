"""The Celery app of the peer bench: prefork pool, Redis broker and result backend,
``task_track_started`` (status tracking, which tusd-py always does). Imported only by
the peers' venv: ``celery -A bench.peer_celery worker -c 2``. The Redis URL comes from
``BENCH_PEER_REDIS``."""

from __future__ import annotations

import os

from celery import Celery

from bench.peer_jobs import upper_file

app = Celery("bench_peer", broker=os.environ["BENCH_PEER_REDIS"], backend=os.environ["BENCH_PEER_REDIS"])
app.conf.update(
    task_track_started=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
upper = app.task(name="bench.upper")(upper_file)
