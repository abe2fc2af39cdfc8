// The seed article's cover pipeline shape, on the unmodified @google/genai SDK pointed at a
// `costguard guard` gateway: one inline batch of image prompts, poll until done, collect the
// images. Nothing in it knows about costguard except the base URL.
// Env: GUARD_BASE_URL (http://127.0.0.1:PORT, the gateway), GEMINI_API_KEY.
// Prints one JSON report as its last stdout line: {"ok": true, ...} or {"ok": false, "error"}.
import { GoogleGenAI } from '@google/genai';

const ai = new GoogleGenAI({
  apiKey: process.env.GEMINI_API_KEY,
  httpOptions: { baseUrl: process.env.GUARD_BASE_URL },
});
const MODEL = 'gemini-3.1-flash-image';
const TERMINAL = new Set(['JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED', 'JOB_STATE_EXPIRED']);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const covers = ['a lighthouse at dusk', 'a fox in the snow', 'a paper boat on a pond'];

let job;
const started = Date.now();
try {
  job = await ai.batches.create({
    model: MODEL,
    src: covers.map((prompt, i) => ({
      contents: [{ parts: [{ text: `book cover: ${prompt}` }], role: 'user' }],
      metadata: { key: `cover-${i}` },
      config: { responseModalities: ['IMAGE'] },
    })),
    config: { displayName: 'covers' },
  });
} catch (error) {
  console.log(JSON.stringify({
    ok: false, status: error.status, message: String(error.message), ms: Date.now() - started,
  }));
  process.exit(0);
}
for (let i = 0; i < 600 && !TERMINAL.has(job.state); i += 1) {
  await sleep(50);
  job = await ai.batches.get({ name: job.name });
}
const responses = job.dest?.inlinedResponses ?? [];
const images = responses.filter((r) => (r.response?.candidates?.[0]?.content?.parts ?? [])
  .some((part) => part.inlineData?.data)).length;
console.log(JSON.stringify({
  ok: true, name: job.name, state: job.state, images,
  keys: responses.map((r) => r.metadata?.key),
}));
