from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from flamehaven import ratelimit
from search.serializers import (
    CacheClearRequestSerializer,
    CacheClearResponseSerializer,
    CacheStatsSerializer,
    SearchQuerySerializer,
    SearchRequestSerializer,
    SearchResponseSerializer,
)
from search.services import SearchParams, cache_clear, cache_stats, search


class SearchView(APIView):
    """Ask a question of a store; the answer comes with its sources."""

    # POST only carries a longer question: searching is a read, whatever the verb.
    required_scope = "read"
    # Counted in the search rate limit with the cache read (ratelimit.Deferred).
    throttle_classes = []
    error_statuses = (422, 502, 503)

    @extend_schema(
        summary="Search (simple form)",
        parameters=[SearchQuerySerializer],
        responses={200: SearchResponseSerializer},
    )
    def get(self, request):
        with ratelimit.Deferred(request, "search") as count:
            form = SearchQuerySerializer(data=request.query_params)
            form.is_valid(raise_exception=True)
            data = form.validated_data
            params = SearchParams(
                query=data["q"],
                store_name=data["store"],
                mode=data["mode"],
                top_k=data.get("top_k"),
                min_score=data.get("min_score"),
            )
            return Response(search(params, count))

    @extend_schema(
        summary="Search",
        request=SearchRequestSerializer,
        responses={200: SearchResponseSerializer},
    )
    def post(self, request):
        with ratelimit.Deferred(request, "search") as count:
            form = SearchRequestSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            return Response(search(SearchParams(**form.validated_data), count))


class CacheStatsView(APIView):
    """Search-cache statistics: hits, misses, hit rate, entries."""

    required_scope = "read"

    @extend_schema(summary="Search-cache statistics", responses=CacheStatsSerializer)
    def get(self, request):
        return Response(cache_stats())


class CacheClearView(APIView):
    """Clear the search cache: one store's entries, or all."""

    required_scope = "admin"

    @extend_schema(
        summary="Clear the search cache",
        request=CacheClearRequestSerializer,
        responses=CacheClearResponseSerializer,
    )
    def post(self, request):
        form = CacheClearRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return Response(cache_clear(store_name=form.validated_data.get("store")))
