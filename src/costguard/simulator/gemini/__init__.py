"""The Gemini face of the simulator: generateContent, Batch API and Files API.

Wire shapes are the ones the SDKs send and read (captured from google-genai 3.4 and
@google/genai 2.32), so the unmodified SDKs talk to it: google-genai 3.x calls `/v1`, 2.x and
@google/genai call `/v1beta`. Every route is served under `/v1`, `/v1beta` and `/v1alpha` alike,
optionally below a path prefix kept from the client's base URL (`http://host/proxy/v1/...`);
uploads go to `/upload/{ver}/files` and downloads are also served at
`/download/{ver}/files/{id}:download`. Success is always HTTP 200 (the Python SDK treats any
other status as an error). Batch calls answer a long-running Operation whose `metadata` is the
batch; its state goes `BATCH_STATE_PENDING` -> `BATCH_STATE_RUNNING` -> one of
`BATCH_STATE_SUCCEEDED`, `_FAILED`, `_CANCELLED`, `_EXPIRED`. An inline job's results come back
in the Operation (`metadata.output.inlinedResponses.inlinedResponses`, repeated as the top-level
`response`); a file job's results are the JSONL file `files/batch-<job id>`.

Modules, lowest first: `wire` (proto JSON helpers), `errors` (Google error bodies), `usage`
(the token table), `parts` (proto JSON type checks of contents), `content` (request
validation, refusals, generateContent responses),
`files` and `batches` (stored records, the job timeline), `base` (the host protocol and
helpers every route group shares), `results` (batch results), `model_routes`,
`batch_routes`, `file_routes` (handlers by resource) and `face` (`GeminiFace`: routes, auth,
state).

Re-exports the names other packages use: `GeminiFace` (loaded by `costguard.simulator`), and
`FINISH_MESSAGES`, `OUTPUT_TYPE` and `error_body` (replay of recordings).
`docs/simulator-gemini.md` describes the timeline, scenarios and result-file format.
"""

from costguard.simulator.gemini.batches import OUTPUT_TYPE
from costguard.simulator.gemini.content import FINISH_MESSAGES
from costguard.simulator.gemini.errors import error_body
from costguard.simulator.gemini.face import GeminiFace

__all__ = ["FINISH_MESSAGES", "OUTPUT_TYPE", "GeminiFace", "error_body"]
