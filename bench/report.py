"""Turn a run's results into the terminal table, the targets verdict and the PNG plot."""

from pathlib import Path

TOPOLOGY_ORDER = ["daphne1", "daphne2", "uvicorn", "gthread"]


def _f(value, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}"


def _ratio(results: dict, topology: str, level: str) -> float | None:
    base = results["write"].get("baseline_sql", {}).get(level)
    mine = results["write"].get(topology, {}).get(level)
    if not base or not mine or not base.get("ops_per_s"):
        return None
    return mine["ops_per_s"] / base["ops_per_s"]


def evaluate_targets(results: dict) -> None:
    """The issue's targets, each with the measured figure and whether it is met."""
    targets = []

    def add(name: str, measured, limit, ok, unit: str, note: str = "") -> None:
        targets.append(
            {
                "target": name,
                "measured": measured,
                "limit": limit,
                "met": None if measured is None else bool(ok),
                "unit": unit,
                "note": note,
            }
        )

    for topology in TOPOLOGY_ORDER:
        ratio = _ratio(results, topology, "32")
        if ratio is not None:
            add(
                f"write path >= 20% of bare SQL at 32 clients ({topology})",
                round(ratio * 100, 1),
                20,
                ratio >= 0.20,
                "%",
            )
    ws = results["ws"].get("daphne1", {})
    for clients, limit in (("100", 20), ("1000", 100)):
        if clients in ws:
            p99 = ws[clients]["p99_ms"]
            add(
                f"update-to-screen p99 with {clients} clients, 1 process",
                None if p99 is None else round(p99, 1),
                limit,
                p99 is not None and p99 < limit,
                "ms",
            )
    sizes = results["scale"].get("sizes", [])
    if sizes:
        largest = sizes[-1]
        players = largest["players"]
        add(
            f"top ten at {players} players (cached board)",
            round(largest["top10_cached_ms"], 3),
            1,
            largest["top10_cached_ms"] < 1,
            "ms",
        )
        add(
            f"top ten at {players} players (indexed query, through the ORM)",
            round(largest["top10_orm_ms"], 3),
            1,
            largest["top10_orm_ms"] < 1,
            "ms",
        )
        worst_redis = max(rank["redis_ms"] for rank in largest["ranks"].values())
        add(
            f"any rank at {players} players (Redis index, player_rank)",
            round(worst_redis, 3),
            1,
            worst_redis < 1,
            "ms",
        )
        worst_db = max(rank["db_count_ms"] for rank in largest["ranks"].values())
        add(
            f"any rank at {players} players (database COUNT fallback)",
            round(worst_db, 2),
            1,
            worst_db < 1,
            "ms",
            "fallback only, used while Redis is down or the index rebuilds",
        )
    memory = results["memory"].get("daphne")
    if memory:
        per_kb = memory["per_socket_kib"] * 1.024
        add(
            f"resident memory per idle socket ({memory['sockets']} sockets)",
            round(per_kb, 1),
            40,
            per_kb < 40,
            "KB",
        )
    waste = results.get("no_waste")
    if waste:
        add(
            "broadcasts per 1000 writes that do not change the top ten",
            waste["broadcasts_per_1000_writes"],
            0,
            waste["broadcasts"] == 0,
            "",
        )
    burst = results.get("burst")
    if burst:
        bound = burst["bound_per_s"] + 1
        add(
            "broadcasts per second under a top-ten burst (throttle bound)",
            round(burst["broadcasts_per_s"], 1),
            bound,
            burst["broadcasts_per_s"] <= bound,
            "/s",
        )
    results["targets"] = targets


def table(results: dict) -> str:
    lines: list[str] = []
    meta = results["meta"]
    lines.append(
        f"\nLive scoreboard benchmark ({meta['mode']}), {meta['started']}, "
        f"commit {meta['commit']}, "
        f"{meta['nproc']} CPUs ({meta['cpu']}), {meta['memory_gib']} GiB RAM, "
        f"{meta.get('duration_s', '?')} s, load average {' '.join(meta.get('loadavg_start', []))} "
        f"at the start, {' '.join(meta.get('loadavg_end', []))} at the end"
    )
    topologies = meta["topologies"]

    lines.append("\n1/7. Write path: POST /api/scores/update (JWT, validation, ledger, increment,")
    lines.append(
        "     refresh, broadcast) vs the same SQL from bare psycopg at the same concurrency"
    )
    lines.append(
        f"  {'topology':<48} {'clients':>7} {'writes/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'vs SQL':>7} {'srv CPU ms/op':>13}"
    )
    for topology in [*TOPOLOGY_ORDER, "baseline_sql"]:
        label = topologies.get(topology, "bare psycopg (baseline)")
        for level, row in results["write"].get(topology, {}).items():
            ratio = _ratio(results, topology, level) if topology != "baseline_sql" else None
            lines.append(
                f"  {label:<48} {level:>7} {row['ops_per_s']:>9.0f} {_f(row['p50_ms']):>8} "
                f"{_f(row['p99_ms']):>8} {_f(ratio and ratio * 100, 1, '%'):>7} "
                f"{_f(row.get('server_cpu_ms_per_op'), 2):>13}"
            )

    for kind, row in results.get("anatomy", {}).items():
        lines.append(
            f"  one request, {kind}: {row['sql']:.0f} SQL statements, "
            f"{row['redis']:.0f} Redis round trips"
        )
    daphne = results["write"].get("daphne1", {})
    connects = [row.get("redis_connects_per_op") for row in daphne.values()]
    connects = [value for value in connects if value is not None]
    if connects:
        lines.append(
            f"  new Redis connections per write under Daphne: {max(connects):.2f} "
            "(server-wide counter: approximate)"
        )

    lines.append("\n3/7. Reads: GET /api/scores/leaderboard")
    for topology, row in results["read"].items():
        label = topologies.get(topology, "bare Redis GET of the cached board (baseline)")
        write_rate = _best_write_rate(results, topology)
        vs = f", {row['ops_per_s'] / write_rate:.1f}x the write rate" if write_rate else ""
        lines.append(
            f"  {label:<48} c={row['concurrency']:<3} {row['ops_per_s']:>7.0f}/s "
            f"p50 {_f(row['p50_ms'])} ms p99 {_f(row['p99_ms'])} ms{vs}"
        )

    lines.append("\n2/7. Update to screen: POST that changes the top ten -> every WebSocket client")
    lines.append(
        f"  {'server':<48} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'received':>9} {'versions':>8} {'POST p50':>8}"
    )
    for topology in [*TOPOLOGY_ORDER, "baseline_ws"]:
        label = topologies.get(topology, "bare websockets broadcast (baseline)")
        for clients, row in results["ws"].get(topology, {}).items():
            lines.append(
                f"  {label:<48} {clients:>7} {_f(row['p50_ms']):>8} {_f(row['p99_ms']):>8} "
                f"{_f(row['max_ms']):>8} {_f(row['received_share_min'] * 100, 1, '%'):>9} "
                f"{row.get('versions_seen', row.get('n', 0) // max(1, row['clients'])):>8} "
                f"{_f(row.get('post_p50_ms')):>8}"
            )

    waste = results.get("no_waste")
    lines.append("\n5/7. No waste")
    if waste:
        lines.append(
            f"  {waste['load']['writes']} writes that do not change the top ten: "
            f"{waste['broadcasts']} broadcasts "
            f"({waste['broadcasts_per_1000_writes']:.1f} per 1000), "
            f"{waste['versions_created']} new versions"
        )
    burst = results.get("burst")
    if burst:
        lines.append(
            f"  top-ten burst: {burst['load']['ops_per_s']:.0f} changing writes/s, "
            f"{burst['versions_per_s']:.0f} board versions/s -> {burst['broadcasts_per_s']:.1f} "
            f"broadcasts/s (throttle bound {burst['bound_per_s']:.0f}/s, smallest gap "
            f"{_f(burst['min_gap_ms'])} ms, in order: {burst['in_order']})"
        )

    lines.append("\n6/7. Memory: idle WebSocket clients")
    for name, row in results["memory"].items():
        label = "1 Daphne process" if name == "daphne" else "bare websockets server (baseline)"
        lines.append(
            f"  {label:<48} {row['sockets']} sockets: RSS {row['rss_before_kib'] / 1024:.1f} -> "
            f"{row['rss_after_kib'] / 1024:.1f} MiB, {row['per_socket_kib'] * 1.024:.1f} KB/socket"
        )

    lines.append("\n4/7. Scale: ms per query (median)")
    lines.append(
        f"  {'players':>9} {'top10 cache':>11} {'top10 ORM':>10} {'top10 SQL':>10} "
        f"{'rank':>7} {'COUNT ms':>9} {'Redis ms':>9} {'around ms':>9}"
    )
    for entry in results["scale"].get("sizes", []):
        for label, rank in entry["ranks"].items():
            lines.append(
                f"  {entry['players']:>9} {entry['top10_cached_ms']:>11.3f} "
                f"{entry['top10_orm_ms']:>10.3f} {entry['top10_sql_ms']:>10.3f} {label:>7} "
                f"{rank['db_count_ms']:>9.2f} {rank['redis_ms']:>9.3f} {rank['neighbors_ms']:>9.2f}"
            )
        lines.append(
            f"  {'':>9} (COPY load {entry['load_s']} s, Redis index rebuild "
            f"{entry['index_rebuild_s']} s)"
        )

    lines.append("\nTargets (reported, not asserted)")
    for target in results.get("targets", []):
        verdict = {True: "met", False: "MISSED", None: "n/a"}[target["met"]]
        lines.append(
            f"  [{verdict:>6}] {target['target']}: {target['measured']} {target['unit']} "
            f"(limit {target['limit']} {target['unit']})"
        )
    for error in results.get("errors", []):
        lines.append(f"  phase failed: {error['phase']}: {error['error']}")
    return "\n".join(lines) + "\n"


def _best_write_rate(results: dict, topology: str) -> float | None:
    rows = results["write"].get(topology if topology != "baseline_redis" else "baseline_sql", {})
    rates = [row["ops_per_s"] for row in rows.values()]
    return max(rates) if rates else None


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = results["meta"]
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    fig.suptitle(
        f"Live scoreboard benchmark ({meta['mode']}), {meta['started']}, "
        f"{meta['nproc']} CPUs, {meta['memory_gib']} GiB"
    )

    ax = axes[0][0]
    for topology in [*TOPOLOGY_ORDER, "baseline_sql"]:
        rows = results["write"].get(topology)
        if not rows:
            continue
        levels = [int(level) for level in rows]
        label = meta["topologies"].get(topology, "bare psycopg, same SQL (baseline)")
        style = "--" if topology == "baseline_sql" else "-"
        ax.plot(levels, [row["ops_per_s"] for row in rows.values()], style, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("score updates per second")
    ax.set_title("Write throughput vs concurrency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[0][1]
    for topology in ["daphne1", "baseline_sql"]:
        for level, row in results["write"].get(topology, {}).items():
            cdf = row.get("cdf") or []
            if not cdf:
                continue
            share = [index / max(1, len(cdf) - 1) for index in range(len(cdf))]
            name = "1 Daphne" if topology == "daphne1" else "bare SQL"
            style = "--" if topology == "baseline_sql" else "-"
            ax.plot(cdf, share, style, label=f"{name}, {level} clients")
    ax.set_xscale("log")
    ax.set_xlabel("POST latency (ms)")
    ax.set_ylabel("share of requests")
    ax.set_title("Write latency distribution (CDF)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[1][0]
    for topology in [*TOPOLOGY_ORDER, "baseline_ws"]:
        for clients, row in results["ws"].get(topology, {}).items():
            cdf = row.get("cdf") or []
            if not cdf:
                continue
            share = [index / max(1, len(cdf) - 1) for index in range(len(cdf))]
            name = {"daphne1": "1 Daphne", "daphne2": "2 Daphne"}.get(topology, "bare websockets")
            style = "--" if topology == "baseline_ws" else "-"
            ax.plot(cdf, share, style, label=f"{name}, {clients} clients")
    ax.set_xscale("log")
    ax.set_xlabel("update-to-screen latency (ms)")
    ax.set_ylabel("share of deliveries")
    ax.set_title("Update to screen (CDF)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[1][1]
    sizes = results["scale"].get("sizes", [])
    if sizes:
        players = [entry["players"] for entry in sizes]
        series = {
            "top ten, cached board": [entry["top10_cached_ms"] for entry in sizes],
            "top ten, indexed query (ORM)": [entry["top10_orm_ms"] for entry in sizes],
            "rank bottom, database COUNT": [e["ranks"]["bottom"]["db_count_ms"] for e in sizes],
            "rank middle, database COUNT": [e["ranks"]["middle"]["db_count_ms"] for e in sizes],
            "rank bottom, Redis index": [e["ranks"]["bottom"]["redis_ms"] for e in sizes],
            "rank top, Redis index": [e["ranks"]["top"]["redis_ms"] for e in sizes],
        }
        for label, values in series.items():
            ax.plot(players, values, marker="o", label=label)
        ax.axhline(1.0, color="grey", linestyle=":", label="1 ms target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("players")
    ax.set_ylabel("ms per query (median)")
    ax.set_title("Scale: top ten and single rank")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
