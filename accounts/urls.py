from django.urls import path

from accounts import apis

app_name = "accounts"

urlpatterns = [
    path("register", apis.RegisterApi.as_view(), name="register"),
    path("token", apis.TokenApi.as_view(), name="token"),
    path("token/refresh", apis.TokenRefreshApi.as_view(), name="token-refresh"),
    path("token/verify", apis.TokenVerifyApi.as_view(), name="token-verify"),
    path("logout", apis.LogoutApi.as_view(), name="logout"),
    path("me", apis.MeApi.as_view(), name="me"),
]
