"""The OpenAI face of the simulator: `/v1` files, batches and images as the `openai` SDKs use them.

Wire shapes follow the OpenAI API as the official `openai` SDKs (Python and Node) send and read
it: the client's `base_url` ends in `/v1`, every request carries `authorization: Bearer <key>`,
every response an `x-request-id`, and every error the body
`{"error": {"message", "type", "param", "code"}}`. Error bodies are the fixtures in
`fixtures/openai/errors/`, usage token counts come from `fixtures/openai/usage.yaml`.

A batch job is a few numbers, not a copy of its results: its status, request counts and usage
are computed from the simulated clock and the job's scenario whenever a client asks, and its
output and error files are generated line by line while they are downloaded. The input file
is scanned once at creation (validation, per-request outcome and tokens, line offsets), so a
50,000-request batch costs a few hundred kilobytes of bookkeeping beside its input bytes.

Modules, lowest first: `limits` (size limits), `errors` (error bodies), `usage` (image-call
validation and token counts), `wire` (JSON and multipart request bodies), `files` and
`batches` (stored records, the batch timeline, the input scan), `base` (state and helpers every
route handler shares), `images`, `results` (batch accounting and result files), `file_routes`
and `batch_routes` (handlers by resource) and `face` (`OpenAIFace`: routes, auth, state).

Re-exports the names other packages use: `OpenAIFace` (loaded by `costguard.simulator`),
`OpenAILimits` (tests lower the limits), and `error_body`, `MODERATION_CATEGORY` and
`UNFINISHED_MESSAGES` (replay of recordings).
"""

from costguard.simulator.openai.batches import UNFINISHED_MESSAGES
from costguard.simulator.openai.errors import MODERATION_CATEGORY, error_body
from costguard.simulator.openai.face import OpenAIFace
from costguard.simulator.openai.limits import OpenAILimits

__all__ = [
    "MODERATION_CATEGORY",
    "UNFINISHED_MESSAGES",
    "OpenAIFace",
    "OpenAILimits",
    "error_body",
]
