// Drives the unmodified @google/genai SDK through a full Gemini batch cycle against a running
// `costguard simulate serve`: upload -> file batch -> poll -> download, plus an inline batch.
// Env: SIM_BASE_URL (http://127.0.0.1:PORT), SIM_API_KEY, WORK_DIR (scratch folder).
// Prints one JSON report as its last stdout line; exits non-zero on any unexpected error.
import fs from 'node:fs';
import path from 'node:path';
import { GoogleGenAI } from '@google/genai';

const baseUrl = process.env.SIM_BASE_URL;
const workDir = process.env.WORK_DIR || fs.mkdtempSync('/tmp/gemini-cycle-');
const ai = new GoogleGenAI({ apiKey: process.env.SIM_API_KEY, httpOptions: { baseUrl } });
const MODEL = 'gemini-2.5-flash-image';
const TERMINAL = new Set(['JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED', 'JOB_STATE_EXPIRED']);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function poll(name) {
  for (let i = 0; i < 600; i += 1) {
    const job = await ai.batches.get({ name });
    if (TERMINAL.has(job.state)) return job;
    await sleep(50);
  }
  throw new Error(`${name} never finished`);
}

async function waitForFile(file) {
  // files.download streams to disk and may resolve before the stream is flushed.
  let last = -1;
  for (let i = 0; i < 100; i += 1) {
    const size = fs.existsSync(file) ? fs.statSync(file).size : -1;
    if (size > 0 && size === last) return;
    last = size;
    await sleep(50);
  }
  throw new Error(`${file} was never written`);
}

const isPng = (b64) => Buffer.from(b64, 'base64').subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

// 1. upload a JSONL input file (camelCase start body, string size)
const input = path.join(workDir, 'node-input.jsonl');
fs.writeFileSync(input, ['n0', 'n1', 'n2'].map((key, i) => JSON.stringify({
  key, request: { contents: [{ parts: [{ text: `a lighthouse, variant ${i}` }] }], generationConfig: { responseModalities: ['IMAGE'] } },
})).join('\n') + '\n');
const uploaded = await ai.files.upload({ file: input, config: { mimeType: 'jsonl', displayName: 'node-input' } });

// 2. file batch: create, poll, download, parse
const created = await ai.batches.create({ model: MODEL, src: uploaded.name, config: { displayName: 'node-file' } });
const fileJob = await poll(created.name);
const output = path.join(workDir, 'node-results.jsonl');
await ai.files.download({ file: fileJob.dest.fileName, downloadPath: output });
await waitForFile(output);
const rows = fs.readFileSync(output, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
const images = rows.filter((row) => (row.response?.candidates?.[0]?.content?.parts ?? [])
  .some((part) => part.inlineData && isPng(part.inlineData.data))).length;

// 3. inline batch
const inline = await ai.batches.create({
  model: MODEL,
  src: [
    { contents: [{ parts: [{ text: 'a red fox' }], role: 'user' }], metadata: { key: 'i0' }, config: { responseModalities: ['IMAGE'] } },
    { contents: 'a blue bird', metadata: { key: 'i1' } },
  ],
  config: { displayName: 'node-inline' },
});
const inlineJob = await poll(inline.name);

// 4. an unknown id is a 404 ApiError
let missing = null;
try {
  await ai.batches.get({ name: 'batches/doesnotexist' });
} catch (error) {
  missing = error.status;
}

console.log(JSON.stringify({
  upload: { name: uploaded.name, state: uploaded.state, sizeBytes: uploaded.sizeBytes },
  file: { state: fileJob.state, keys: rows.map((row) => row.key), images },
  inline: { state: inlineJob.state, keys: (inlineJob.dest?.inlinedResponses ?? []).map((r) => r.metadata?.key) },
  missing,
}));
