"""Where collected samples live: one interface (Store), two engines (SQLite, PostgreSQL)."""
