"""The daemon: scheduled probe cycles, workers, reloads, heartbeats, analysis and alerts.

- :mod:`auditor.daemon.schedule`: deterministic fire times and schedule keys.
- :mod:`auditor.daemon.cycles`: plan-or-join, claimable work, after-cycle analysis.
- :mod:`auditor.daemon.reload`: config + registry loading, last good version, file watch.
- :mod:`auditor.daemon.heartbeat`: liveness rows.
- :mod:`auditor.daemon.process`: the event loop, signals and shutdown.
"""

from __future__ import annotations

__all__ = ["Daemon", "run_blocking"]

from auditor.daemon.process import Daemon, run_blocking
