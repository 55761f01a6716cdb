"""Keep the search cache tidy when a store goes (stores never imports search)."""

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from search import cache
from stores.models import Store


@receiver(post_delete, sender=Store, dispatch_uid="search-drop-store-entries")
def drop_deleted_store_entries(sender, instance: Store, **kwargs) -> None:
    # The uid dies with the store, so its entries can never be hit again; this
    # only frees their space, after the delete is committed.
    store_uid = str(instance.uid)
    transaction.on_commit(lambda: cache.delete_entries(store_uid=store_uid))
