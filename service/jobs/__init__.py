"""Jobs: compute requests sent with ``Prefer: respond-async`` run in the background, with progress,
cancellation and stored results that survive a restart (``/v1/jobs``).

- ``middleware``: answers 202 + ``Location`` once the route handler reaches the compute runner;
- ``manager``: the job runner (a fair queue, background tasks, restart recovery, events);
- ``store``: the ``JobStore`` interface and its SQLite implementation;
- ``router``, ``schemas``: the HTTP side.
"""
