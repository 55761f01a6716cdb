"""manage.py embed: compute the vectors that are missing or of another model."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from embeddings import EmbeddingError
from stores import embedding, ownership
from stores.models import Document, Store


class Command(BaseCommand):
    help = (
        "Compute the vectors of every ready document of local stores that has "
        "none, or has another model's (after EMBEDDINGS or the model changed). "
        "New documents get theirs by themselves."
    )

    def add_arguments(self, parser):
        parser.add_argument("--store", help="Only this store's documents.")

    def handle(self, store: str | None, **options):
        if not embedding.enabled():
            raise CommandError("EMBEDDINGS=off: there is no model to embed with.")
        target = None
        if store:
            target = Store.objects.filter(name=store).first()
            if target is None:
                raise CommandError(f"Store '{store}' not found")
        ownership.set_kind("command")
        try:
            model = embedding.model_name()
        except EmbeddingError as exc:
            raise CommandError(str(exc)) from exc
        queryset = Document.objects.filter(store=target) if target else None
        total = embedding.wanted(queryset, model=model).count()
        # tqdm writes to stderr, and only to a terminal (disable=None).
        progress = tqdm(
            total=total,
            unit="doc",
            disable=True if not options["verbosity"] else None,
        )
        with progress:
            done = embedding.embed_everything(store=target, progress=progress.update)
        self.stdout.write(f"Embedded {done} of {total} document(s) with {model}.")
