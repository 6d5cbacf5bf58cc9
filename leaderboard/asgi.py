"""ASGI entry point: HTTP to Django (and the SSE consumer), WebSocket to the realtime routes."""

import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

try:
    from django.core.asgi import get_asgi_application

    django_asgi_app = get_asgi_application()
except ImproperlyConfigured as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    raise SystemExit(1) from None

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator

from realtime.routing import http_routes, websocket_routes

application = ProtocolTypeRouter(
    {
        "http": URLRouter(http_routes(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_routes)),
    }
)
