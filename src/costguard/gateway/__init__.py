"""The budget gateway (`costguard guard`): serves the OpenAI and Gemini APIs on a local port,
prices and reserves every paid call in the ledger before forwarding it to the provider, and
settles it from what the provider reports.

Modules: `routes` (which calls are paid), `price` (a call or an uploaded file -> maximum),
`book` (ledger runs per call or job), `jobs` (when a batch is over and what it cost),
`sinks` and `uploads` (the bodies kept), `app` (the gate on the proxy core), `watch` (the
poller and the grace period), `serve` (a gateway in a thread, for `costguard.guard()`).
Above the ledger, queue, pricing, providers and proxy; never imports the simulator.
"""
