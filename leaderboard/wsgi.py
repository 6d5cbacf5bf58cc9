"""WSGI entry point: the HTTP API on a threaded WSGI server (see README, Performance).

WebSockets and SSE need ASGI (`leaderboard.asgi`, Daphne); plain HTTP can run on
gunicorn's gthread workers, which run views in parallel threads where one ASGI
process runs sync views one at a time.
"""

import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

try:
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    raise SystemExit(1) from None
