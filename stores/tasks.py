"""Background tasks: thin wrappers that take ids, and how to queue them."""

from django.db import transaction
from django_tasks import task
from django_tasks.backends.immediate import ImmediateBackend

from stores import embedding, ownership, pipeline


@task()
def ingest_document(document_id: int) -> None:
    # A document deleted or taken by another owner is simply nothing to do.
    pipeline.ingest(document_id=document_id)


# After any waiting ingestion: a document is searchable lexically first.
@task(priority=-10)
def embed_documents(document_ids: list[int]) -> None:
    embedding.embed(document_ids, owner=ownership.register())


def runs_in_process() -> bool:
    """True when queued tasks run in the queuing process (the immediate backend)."""
    return isinstance(ingest_document.get_backend(), ImmediateBackend)


def queue_owner() -> str:
    """The owner to record on a document queued now (see stores.ownership).

    This process, when the task will run in it; "" when the database queue
    holds the task until a db_worker takes it.
    """
    return ownership.register() if runs_in_process() else ""


def enqueue_ingest(document_id: int) -> None:
    """Queue a document's ingestion as part of the current transaction.

    A database queue writes its task row in this transaction, so the row and the
    document's pending state commit, or vanish, together. The immediate backend
    runs the task at once, so it starts only after the commit.
    """
    if runs_in_process():
        ownership.hold(document_id)  # before the commit: the sweep must not see it
        transaction.on_commit(lambda: ingest_document.enqueue(document_id))
    else:
        ingest_document.enqueue(document_id)
