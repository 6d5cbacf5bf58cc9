from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from leaderboard import health, views

urlpatterns = [
    path("", views.scoreboard_page, name="scoreboard"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/auth/", include("accounts.urls")),
    path("api/", include("scores.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
    # Any other /api/ path is a JSON 404 in the error shape, with DEBUG on too.
    re_path(r"^api/", views.api_not_found),
]

handler404 = "leaderboard.views.not_found"
handler500 = "leaderboard.views.server_error"
