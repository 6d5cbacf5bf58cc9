/* Live updates for the scoreboard page.
 *
 * The server renders the board; this script keeps it current over one WebSocket.
 * It reconnects with exponential backoff and jitter, takes the snapshot every new
 * connection starts with, applies only newer versions, asks for a resync when it
 * missed a message, and highlights the rows that changed. Player data only ever
 * reaches the page through textContent and attributes, never as HTML.
 */
(function () {
  "use strict";

  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 30000;
  var HIGHLIGHT_MS = 1600;
  var RESYNC_MIN_GAP_MS = 1000;
  // A connection that lived this long was healthy: the next reconnect starts the
  // backoff afresh. One closed sooner (say, the server answers and hangs up while
  // Redis is down) keeps backing off, so pages do not hammer a struggling server.
  var STABLE_MS = 10000;

  var table = document.getElementById("board");
  var connection = document.getElementById("connection");
  var totalPlayers = document.getElementById("total-players");
  var lastRefresh = document.getElementById("last-refresh");
  if (!table || !connection || !("WebSocket" in window)) {
    return;
  }
  var tbody = table.tBodies[0];

  var shownVersion = Number(table.getAttribute("data-version")) || 0;
  var socket = null;
  var awaitingSnapshot = false;
  var attempts = 0;
  var liveSince = 0;
  var retryTimer = null;
  var lastResyncAt = 0;

  function setState(state, text) {
    connection.setAttribute("data-state", state);
    connection.textContent = text;
  }

  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/ws/leaderboard/";
  }

  // Exponential backoff with "equal jitter": half the ceiling plus a random half, so
  // a restarted server is not hit by every open page in the same millisecond.
  function nextDelay() {
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempts));
    attempts += 1;
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  function connect() {
    window.clearTimeout(retryTimer);
    retryTimer = null;
    setState("connecting", attempts ? "Reconnecting\u2026" : "Connecting\u2026");
    var ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (error) {
      scheduleReconnect();
      return;
    }
    socket = ws;
    awaitingSnapshot = true;
    ws.onmessage = function (event) {
      if (socket === ws) {
        handle(event.data);
      }
    };
    ws.onclose = function () {
      if (socket === ws) {
        socket = null;
        if (liveSince && Date.now() - liveSince >= STABLE_MS) {
          attempts = 0;
        }
        liveSince = 0;
        scheduleReconnect();
      }
    };
  }

  function scheduleReconnect() {
    if (retryTimer !== null) {
      return;
    }
    var delay = nextDelay();
    setState("offline", "Offline \u00b7 retrying in " + Math.max(1, Math.round(delay / 1000)) + " s");
    retryTimer = window.setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (socket === null) {
      attempts = 0;
      connect();
    }
  }

  function requestResync() {
    var now = Date.now();
    if (socket === null || socket.readyState !== WebSocket.OPEN) {
      return;
    }
    if (now - lastResyncAt < RESYNC_MIN_GAP_MS) {
      return;
    }
    lastResyncAt = now;
    socket.send(JSON.stringify({ type: "resync" }));
  }

  function handle(text) {
    var message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      return;
    }
    if (!message || typeof message.version !== "number") {
      return;
    }
    if (message.type === "leaderboard_snapshot") {
      // The first message of a connection is the server's truth, even with a lower
      // version (a restarted server without Redis numbers afresh); a resync answer
      // only replaces an older board.
      var first = awaitingSnapshot;
      awaitingSnapshot = false;
      if (first) {
        liveSince = Date.now();
        setState("live", "Live");
      }
      if (first || message.version >= shownVersion) {
        render(message);
      }
    } else if (message.type === "leaderboard_update") {
      if (message.version <= shownVersion) {
        return;
      }
      // Versions skip when the server merges changes; previous_version names the
      // message sent before this one, so only a real loss triggers a resync.
      var missed =
        typeof message.previous_version === "number"
          ? message.previous_version > shownVersion
          : message.version > shownVersion + 1;
      render(message);
      if (missed) {
        requestResync();
      }
    }
  }

  function cell(className, value) {
    var td = document.createElement("td");
    td.className = className;
    td.textContent = String(value);
    return td;
  }

  function shownScores() {
    var scores = {};
    Array.prototype.forEach.call(tbody.rows, function (tr) {
      var id = tr.getAttribute("data-user-id");
      if (id) {
        scores[id] = tr.getAttribute("data-score");
      }
    });
    return scores;
  }

  function render(board) {
    var before = shownScores();
    var rows = Array.isArray(board.leaderboard) ? board.leaderboard : [];
    var fragment = document.createDocumentFragment();
    var changed = [];
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      var id = String(row.user_id);
      tr.setAttribute("data-user-id", id);
      tr.setAttribute("data-score", String(row.score));
      tr.appendChild(cell("rank", row.rank));
      tr.appendChild(cell("name", row.username));
      tr.appendChild(cell("score", row.score));
      if (before[id] !== String(row.score)) {
        changed.push(tr);
      }
      fragment.appendChild(tr);
    });
    if (!rows.length) {
      var empty = document.createElement("tr");
      empty.className = "empty";
      var td = cell("", "No scores yet.");
      td.colSpan = 3;
      empty.appendChild(td);
      fragment.appendChild(empty);
    }
    while (tbody.firstChild) {
      tbody.removeChild(tbody.firstChild);
    }
    tbody.appendChild(fragment);
    highlight(changed);

    shownVersion = board.version;
    table.setAttribute("data-version", String(board.version));
    if (totalPlayers && typeof board.total_players === "number") {
      totalPlayers.textContent = String(board.total_players);
    }
    if (lastRefresh && board.last_refresh) {
      lastRefresh.setAttribute("datetime", String(board.last_refresh));
      showTime(lastRefresh);
    }
  }

  function highlight(rows) {
    rows.forEach(function (tr) {
      tr.classList.add("changed");
    });
    window.setTimeout(function () {
      rows.forEach(function (tr) {
        tr.classList.remove("changed");
      });
    }, HIGHLIGHT_MS);
  }

  function showTime(element) {
    var when = new Date(element.getAttribute("datetime"));
    if (!isNaN(when.getTime())) {
      element.textContent = when.toLocaleTimeString();
      element.title = when.toLocaleString();
    }
  }

  if (lastRefresh) {
    showTime(lastRefresh);
  }
  // A phone that wakes up or regains its network should not wait out a long backoff.
  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      reconnectNow();
    }
  });
  connect();
})();
