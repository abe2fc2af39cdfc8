// An OpenAI file batch on the unmodified `openai` Node SDK pointed at a `costguard guard`
// gateway: upload the JSONL through it, create, poll, download the output.
// Env: OPENAI_BASE_URL (http://127.0.0.1:PORT/v1, the gateway), OPENAI_API_KEY.
// Prints one JSON report as its last stdout line.
import OpenAI, { toFile } from 'openai';

const client = new OpenAI({ baseURL: process.env.OPENAI_BASE_URL });
const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const requests = Array.from({ length: 3 }, (_, i) => JSON.stringify({
  custom_id: `cover-${i}`,
  method: 'POST',
  url: '/v1/images/generations',
  body: { model: 'gpt-image-2', prompt: `book cover ${i}`, size: '1024x1024', quality: 'low' },
})).join('\n') + '\n';

const file = await client.files.create({ file: await toFile(Buffer.from(requests), 'covers.jsonl'), purpose: 'batch' });
let batch = await client.batches.create({
  input_file_id: file.id, endpoint: '/v1/images/generations', completion_window: '24h',
});
for (let i = 0; i < 600 && !TERMINAL.has(batch.status); i += 1) {
  await sleep(50);
  batch = await client.batches.retrieve(batch.id);
}
const text = batch.output_file_id ? await (await client.files.content(batch.output_file_id)).text() : '';
const rows = text.trim() ? text.trim().split('\n').map((line) => JSON.parse(line)) : [];
console.log(JSON.stringify({ id: batch.id, status: batch.status, rows: rows.length }));
