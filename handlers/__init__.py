"""Trigger adapters: each turns its input into the same core calls.

* ``cloudevent``   - functions-framework cloudevent target (event bus, PingSource)
* ``http``         - functions-framework http target (manual retries and sweeps)
* ``functiongraph`` - Huawei FunctionGraph event function (timer, EventGrid, APIG)
"""
