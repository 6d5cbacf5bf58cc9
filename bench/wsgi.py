"""A WSGI entry point for the gunicorn gthread topology of the benchmark only.

The project serves over ASGI (Daphne); this lets the benchmark measure what sync
views cost when they run under one ASGI thread instead of a pool of WSGI threads.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

application = get_wsgi_application()
