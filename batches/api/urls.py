from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from batches.api import me, views, webhooks

app_name = "api"

router = SimpleRouter()
router.register("batches", views.BatchViewSet, basename="batch")
router.register("webhooks", webhooks.WebhookViewSet, basename="webhook")

urlpatterns = [
    path("token/", views.TokenView.as_view(), name="token"),
    path("me/settings/", me.UserSettingsView.as_view(), name="me-settings"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    *router.urls,
]
