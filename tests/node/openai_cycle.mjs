// Drives the unmodified `openai` Node SDK through a GPT Image batch cycle against a running
// `costguard simulate serve`: upload -> create -> poll -> download output and error files,
// plus a job the provider cancels (per-job scenario), a client cancel, list paging, a sync
// generate and a moderation refusal.
// Env: OPENAI_BASE_URL (http://127.0.0.1:PORT/v1), OPENAI_API_KEY.
// Prints one JSON report as its last stdout line; exits non-zero on any unexpected error.
import OpenAI, { toFile } from 'openai';

const client = new OpenAI({ maxRetries: 3 });
const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);
const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function poll(id) {
  for (let i = 0; i < 600; i += 1) {
    const batch = await client.batches.retrieve(id);
    if (TERMINAL.has(batch.status)) return batch;
    await sleep(50);
  }
  throw new Error(`${id} never finished`);
}

async function lines(fileId) {
  if (!fileId) return [];
  const text = await (await client.files.content(fileId)).text();
  return text.trim().split('\n').map((line) => JSON.parse(line));
}

const requests = Array.from({ length: 6 }, (_, i) => JSON.stringify({
  custom_id: `node-${i}`,
  method: 'POST',
  url: '/v1/images/generations',
  body: { model: 'gpt-image-1.5', prompt: `a lighthouse, variant ${i}${i === 4 ? ' [refuse]' : ''}`, size: '1024x1024', quality: 'low' },
})).join('\n') + '\n';

// 1. upload, create, poll, download (default scenario: succeeded)
const file = await client.files.create({ file: await toFile(Buffer.from(requests), 'node-batch.jsonl'), purpose: 'batch' });
const created = await client.batches.create({
  input_file_id: file.id, endpoint: '/v1/images/generations', completion_window: '24h', metadata: { run: 'node' },
});
const done = await poll(created.id);
const output = await lines(done.output_file_id);
const errors = await lines(done.error_file_id);
const pngs = output.filter((row) => Buffer.from(row.response.body.data[0].b64_json, 'base64').subarray(0, 8).equals(PNG)).length;

// 2. a job the provider cancels mid-run (per-job scenario through metadata)
const doomed = await client.batches.create({
  input_file_id: file.id, endpoint: '/v1/images/generations', completion_window: '24h', metadata: { cg_scenario: 'cancelled' },
});
const providerCancelled = await poll(doomed.id);
const cancelledErrors = await lines(providerCancelled.error_file_id);
const cancelledOutput = await lines(providerCancelled.output_file_id);

// 3. cancel a slow job from the client
const slow = await client.batches.create({
  input_file_id: file.id, endpoint: '/v1/images/generations', completion_window: '24h', metadata: { cg_scenario: 'slow' },
});
const cancelling = await client.batches.cancel(slow.id);
const cancelled = await poll(slow.id);

// 4. list paging: two per page, all three jobs, newest first
const listed = [];
for await (const batch of client.batches.list({ limit: 2 })) listed.push(batch.id);

// 5. sync generate, refusal, unknown id
const image = await client.images.generate({ model: 'gpt-image-1.5', prompt: 'a red fox', size: '1536x1024', quality: 'high' });
let refusal = null;
try {
  await client.images.generate({ model: 'gpt-image-1.5', prompt: 'a red fox [refuse]' });
} catch (e) {
  refusal = { status: e.status, code: e.code, type: e.type };
}
// streamed generate: partial images, then the completed image (the SDK's SSE parser)
const streamed = [];
const stream = await client.images.generate({
  model: 'gpt-image-1.5', prompt: 'a red fox', stream: true, partial_images: 2, quality: 'low',
});
for await (const event of stream) streamed.push({ type: event.type, index: event.partial_image_index ?? null, tokens: event.usage?.output_tokens ?? null });
let missing = null;
try {
  await client.batches.retrieve('batch_does_not_exist');
} catch (e) {
  missing = e.status;
}

console.log(JSON.stringify({
  file: { id: file.id, purpose: file.purpose, bytes: file.bytes },
  done: {
    status: done.status, counts: done.request_counts, usage: done.usage,
    outputIds: output.map((row) => row.custom_id).sort(), pngs,
    errorIds: errors.map((row) => row.custom_id), errorCodes: errors.map((row) => row.response?.body?.error?.code),
  },
  providerCancel: {
    status: providerCancelled.status, counts: providerCancelled.request_counts, kept: cancelledOutput.length,
    codes: [...new Set(cancelledErrors.map((row) => row.error?.code ?? row.response?.body?.error?.code))].sort(),
  },
  cancel: { first: cancelling.status, last: cancelled.status },
  listed,
  created: [created.id, doomed.id, slow.id],
  image: { usage: image.usage, png: Buffer.from(image.data[0].b64_json, 'base64').subarray(0, 8).equals(PNG) },
  refusal,
  streamed,
  missing,
}));
