"""failjob-reaper: retention for the Huawei Cloud SDRS task center.

The package is the functional core and the shell around it:

* ``policy``   - the pure retention decision (record, policy, now) -> Decision
* ``sdrs``     - the one client that talks to the SDRS task-center API
* ``events``   - turns trigger input into requests, rejecting bad input early
* ``reaper``   - decides one task or sweeps the project, using the above
* ``outcomes`` - builds and delivers the outcome CloudEvents
* ``settings`` - configuration from the environment (pydantic-settings)

Trigger adapters live in the top-level ``handlers`` package; ``main.py`` wires them.
"""
