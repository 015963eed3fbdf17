"""The Celery app of the peers benchmark: one no-op task.

The broker and the result backend are the Redis server that peers.py starts on a private port;
its URL comes in PEERS_REDIS_URL, so the workers (`celery -A celery_tasks worker`, started by
peers.py with this folder as their working directory) and the producer share it.
"""

import os

from celery import Celery

URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "peers"

app = Celery("peers", broker=URL, backend=URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Results are the completion signal, so they are kept (for an hour, then Redis drops them).
    task_ignore_result=False,
    result_expires=3600,
    # Throughput settings: fetch ahead, acknowledge on receipt (Celery's default), no events.
    worker_prefetch_multiplier=int(os.environ.get("PEERS_CELERY_PREFETCH", "16")),
    worker_send_task_events=False,
    task_send_sent_event=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="peers.noop")
def noop(i=0):
    """Does nothing; returns its argument so the result is checked."""
    return i
