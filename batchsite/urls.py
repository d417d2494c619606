from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("batches.api.urls")),
    path("", include("batches.web.urls")),
]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """API clients get JSON, as from DRF's own 404s (e.g. /api/batches/abc/); people get a page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


handler404 = not_found
