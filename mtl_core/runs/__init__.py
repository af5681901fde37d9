"""Runs: the RunManager (one per process; starts, queues and steers runs), the RunStore (SQLite,
the contract between training and UI, with its versioned ``schema``), run statuses, and liveness
by heartbeat."""
