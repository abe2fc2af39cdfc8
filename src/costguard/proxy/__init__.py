"""HTTP forwarding to a real provider: the proxy app that streams an SDK's traffic through to an
upstream (`forward.py`) and the scrubber that keeps keys out of whatever is stored (`scrub.py`).

Below `costguard.simulator`: the recording proxy builds on it; it imports nothing of costguard's
but itself."""
