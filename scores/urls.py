from django.urls import path

from scores import apis

urlpatterns = [
    path("actions", apis.ActionsApi.as_view(), name="actions"),
    path("scores/update", apis.ScoreUpdateApi.as_view(), name="score-update"),
    path("scores/award", apis.ScoreAwardApi.as_view(), name="score-award"),
    path("scores/leaderboard", apis.LeaderboardApi.as_view(), name="leaderboard"),
    path("scores/players/<uuid:user_id>", apis.PlayerApi.as_view(), name="player"),
    path("scores/history", apis.HistoryApi.as_view(), name="score-history"),
]
