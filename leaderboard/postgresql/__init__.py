"""Django's PostgreSQL backend with a pool that heals from mass connection loss at once."""
