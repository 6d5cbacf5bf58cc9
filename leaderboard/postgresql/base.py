"""Django's PostgreSQL backend, with a pool check that sweeps the pool on a dead connection.

One dead connection usually means every idle one is dead (a database restart, a
failover, `pg_terminate_backend`). psycopg_pool's own check finds them one at a
time and backs off longer after each (1, 2, 4, 8 s), so a pool of ten dead
connections outlasts the 10 s pool timeout and requests fail for many seconds.
Here the first dead connection found makes the pool check all its idle
connections at once (`ConnectionPool.check()`), which drops the broken ones and
starts replacing them; the waiting request gets a fresh one in milliseconds.
"""

import logging

from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)


def check_connection(conn) -> None:
    """psycopg_pool's check; on a dead connection, check the whole pool before failing."""
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        pool = getattr(conn, "_pool", None)  # psycopg_pool sets it on its connections
        if isinstance(pool, ConnectionPool):
            logger.warning("database connection lost; checking every pooled connection")
            pool.check()
        raise


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias in self._connection_pools or not pool_options:
            return super().pool
        # Django builds ConnectionPool(check=ConnectionPool.check_connection, ...) when
        # CONN_HEALTH_CHECKS is on; build it the same way with the sweeping check.
        options = {} if pool_options is True else dict(pool_options)
        connect_kwargs = self.get_connection_params()
        connect_kwargs["autocommit"] = True
        pool = ConnectionPool(
            kwargs=connect_kwargs,
            open=False,
            configure=self._configure_connection,
            check=check_connection,
            **options,
        )
        self._connection_pools.setdefault(self.alias, pool)
        return self._connection_pools[self.alias]
