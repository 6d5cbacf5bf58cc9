from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from leaderboard.errors import error_body
from scores.board import leaderboard_snapshot


@require_GET
def scoreboard_page(request: HttpRequest) -> HttpResponse:
    """The public scoreboard: the top ten rendered on the server, then live over WebSocket."""
    return render(request, "scoreboard.html", {"board": leaderboard_snapshot()})


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """JSON 404 for the API; Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return HttpResponse("<h1>Not found</h1>", status=404)


def api_not_found(request: HttpRequest) -> JsonResponse:
    """JSON 404 for unknown API paths."""
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """Never a trace: one JSON sentence for the API, one line of HTML elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("server_error", "An unexpected error occurred."), status=500)
    return HttpResponse("<h1>Server error</h1>", status=500)
