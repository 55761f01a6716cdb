from django.urls import path

from search import views

urlpatterns = [
    path("search", views.SearchView.as_view(), name="search"),
    path("cache/", views.CacheStatsView.as_view(), name="cache-stats"),
    path("cache/clear", views.CacheClearView.as_view(), name="cache-clear"),
]
