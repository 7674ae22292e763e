"""The reference model backend: `state` (SQLite, behaviour), `app` (HTTP routes), `server`
(command line), `seed` (live records for specs), `process` (run it as a child process)."""
