import copy

from django.conf import settings
from django.core.validators import ProhibitNullCharactersValidator
from rest_framework import serializers

from search.services import MODES


class QueryField(serializers.CharField):
    """A question as typed: control characters (NUL too) are the service's to strip."""

    def __init__(self, **kwargs):
        super().__init__(allow_blank=True, trim_whitespace=False, **kwargs)
        self.validators = [
            v
            for v in self.validators
            if not isinstance(v, ProhibitNullCharactersValidator)
        ]


class FlatSerializer(serializers.Serializer):
    """A serializer of plain fields (no nested serializers) that gives each
    instance shallow copies of its declared fields.

    DRF deep-copies them, which builds every field again from its arguments:
    0.19 ms of a 1.35 ms cache-hit search (bench/hit_path.py --profile). A
    shallow copy is enough here: binding sets only the copy's own attributes,
    and validation reads the shared validators without changing them.
    """

    def get_fields(self):
        return {name: copy.copy(f) for name, f in self._declared_fields.items()}


class SearchRequestSerializer(FlatSerializer):
    # Blank and over-long queries are judged by the service (EMPTY_QUERY and
    # VALIDATION_ERROR), so the API, the admin page and the GET form agree.
    query = QueryField()
    store_name = serializers.CharField(default="default", max_length=63)
    mode = serializers.ChoiceField(choices=MODES, default="auto")
    model = serializers.CharField(required=False, max_length=100)
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=65536)
    temperature = serializers.FloatField(required=False, min_value=0.0, max_value=2.0)
    top_k = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=100,
        help_text=f"At most MAX_SOURCES ({settings.MAX_SOURCES}) sources are returned.",
    )
    min_score = serializers.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text=(
            "The relevance floor for this search (local stores), on the scale of "
            "the sources' `score` (0 to 1): when no source reaches it, the answer "
            "says that nothing relevant was found, with no sources and "
            "`grounded: false`. 0 turns it off. Default SEARCH_MIN_SCORE "
            f"({settings.SEARCH_MIN_SCORE})."
        ),
    )


class SearchQuerySerializer(FlatSerializer):
    """The simple form: ``GET /api/search?q=...&store=...``."""

    q = QueryField()
    store = serializers.CharField(default="default", max_length=63)
    mode = serializers.ChoiceField(choices=MODES, default="auto")
    top_k = serializers.IntegerField(required=False, min_value=1, max_value=100)
    min_score = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)


class SourceSerializer(serializers.Serializer):
    title = serializers.CharField()
    uri = serializers.CharField()
    document_id = serializers.IntegerField(allow_null=True)
    snippet = serializers.CharField()
    score = serializers.FloatField()
    page = serializers.IntegerField(
        allow_null=True, help_text="The page the passage is on (PDFs), else null."
    )
    section = serializers.CharField(
        allow_null=True, help_text="The heading the passage sits under, if any."
    )
    chunk_id = serializers.IntegerField(
        allow_null=True,
        help_text="The passage (a chunk of a local store); null for Gemini stores.",
    )


class CitationSerializer(serializers.Serializer):
    start = serializers.IntegerField(
        min_value=0,
        help_text=(
            "Where the cited span starts in `answer`, in characters (Unicode code "
            "points, not bytes or UTF-16 units), from 0."
        ),
    )
    end = serializers.IntegerField(
        min_value=0,
        help_text="Where it ends, exclusive: `answer[start:end]` is the cited text.",
    )
    sources = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        help_text=(
            "The sources that support the span, numbered from 1 like the [n] "
            "markers in the answer: 1 is sources[0]."
        ),
    )


class SearchResponseSerializer(serializers.Serializer):
    status = serializers.CharField()
    answer = serializers.CharField()
    sources = SourceSerializer(many=True)
    citations = CitationSerializer(
        many=True,
        help_text=(
            "Which spans of the answer each source supports, in the order of the "
            "answer; empty when nothing is cited."
        ),
    )
    grounded = serializers.BooleanField(
        help_text=(
            "false when nothing in the store was relevant enough: the answer says "
            "so and sources is empty."
        )
    )
    model = serializers.CharField()
    query = serializers.CharField()
    store = serializers.CharField()
    backend = serializers.ChoiceField(choices=["gemini", "local"])
    cached = serializers.BooleanField()
    fallback = serializers.BooleanField()
    took_ms = serializers.FloatField()
    request_id = serializers.CharField()


class CacheStatsSerializer(serializers.Serializer):
    backend = serializers.CharField(help_text="redis, or locmem (per process).")
    shared = serializers.BooleanField(
        help_text="Whether every worker sees the same entries and counts."
    )
    available = serializers.BooleanField(
        help_text="False while the cache cannot be reached; searches still answer."
    )
    hits = serializers.IntegerField(allow_null=True)
    misses = serializers.IntegerField(allow_null=True)
    hit_rate = serializers.FloatField(
        allow_null=True, help_text="hits / (hits + misses); null before any lookup."
    )
    entries = serializers.IntegerField(allow_null=True)
    max_entries = serializers.IntegerField(
        allow_null=True, help_text="The locmem bound; null for Redis."
    )
    ttl_seconds = serializers.IntegerField()
    errors = serializers.IntegerField(
        help_text="Failed cache calls in the process that answered."
    )


class CacheClearRequestSerializer(serializers.Serializer):
    store = serializers.CharField(
        required=False,
        max_length=63,
        help_text="Clear only this store's entries; omit to clear all.",
    )


class CacheClearResponseSerializer(serializers.Serializer):
    status = serializers.CharField()
    store = serializers.CharField(allow_null=True)
    removed = serializers.IntegerField(
        allow_null=True,
        help_text=(
            "Entries deleted; null if the cache could not be reached (the entries "
            "are unreachable anyway: the store revisions moved on)."
        ),
    )
