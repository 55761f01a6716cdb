"""Background tasks: thin wrappers that take ids and call a service."""

from django_tasks import task


@task()
def ingest_document(document_id: int) -> None:
    from stores.services import document_ingest

    # A document deleted before its turn came is simply nothing to do.
    document_ingest(document_id=document_id)
