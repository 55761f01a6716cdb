from django.urls import path

from stores import views

store_list = views.StoreViewSet.as_view({"get": "list", "post": "create"})
store_detail = views.StoreViewSet.as_view({"get": "retrieve", "delete": "destroy"})
document_list = views.DocumentViewSet.as_view({"get": "list", "post": "create"})
document_detail = views.DocumentViewSet.as_view(
    {"get": "retrieve", "delete": "destroy"}
)
document_reindex = views.DocumentViewSet.as_view({"post": "reindex"})

urlpatterns = [
    path("stores/", store_list, name="store-list"),
    path("stores/<str:name>/", store_detail, name="store-detail"),
    path("stores/<str:store_name>/documents/", document_list, name="document-list"),
    path(
        "stores/<str:store_name>/documents/<int:pk>/",
        document_detail,
        name="document-detail",
    ),
    path(
        "stores/<str:store_name>/documents/<int:pk>/reindex/",
        document_reindex,
        name="document-reindex",
    ),
    path("upload/single", views.UploadSingleView.as_view(), name="upload-single"),
    path("upload/multiple", views.UploadMultipleView.as_view(), name="upload-multiple"),
]
