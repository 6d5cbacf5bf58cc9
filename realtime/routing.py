from collections.abc import Callable

from django.urls import path, re_path

from realtime import consumers

websocket_routes = [
    path("ws/leaderboard/", consumers.LeaderboardConsumer.as_asgi()),
]


def http_routes(django_app: Callable) -> list:
    """The SSE stream is a Channels HTTP consumer; everything else goes to Django."""
    return [
        path("api/scores/events", consumers.LeaderboardEventsConsumer.as_asgi()),
        re_path(r"", django_app),
    ]
