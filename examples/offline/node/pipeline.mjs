// A small image pipeline on both providers' batch APIs: prompts in, images (or reasons) out,
// by key. The Node twin of ../pipeline_openai.py and ../pipeline_gemini.py; it knows nothing
// about costguard (docs/testing-offline.md).
import { toFile } from 'openai';

const OPENAI_DONE = new Set(['completed', 'failed', 'expired', 'cancelled']);
const GEMINI_DONE = new Set(['JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED', 'JOB_STATE_EXPIRED']);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One image per prompt through one OpenAI batch. Returns { status, images, failures } by key. */
export async function renderOpenAI(client, prompts, { model = 'gpt-image-2', metadata, pollMs = 30_000 } = {}) {
  const lines = Object.entries(prompts)
    .map(([key, prompt]) => JSON.stringify({
      custom_id: key,
      method: 'POST',
      url: '/v1/images/generations',
      body: { model, prompt, size: '1024x1024', quality: 'low' },
    }))
    .join('\n');
  const upload = await client.files.create({ file: await toFile(Buffer.from(`${lines}\n`), 'prompts.jsonl'), purpose: 'batch' });
  let batch = await client.batches.create({
    input_file_id: upload.id,
    endpoint: '/v1/images/generations',
    completion_window: '24h',
    ...(metadata ? { metadata } : {}),
  });
  while (!OPENAI_DONE.has(batch.status)) {
    await sleep(pollMs);
    batch = await client.batches.retrieve(batch.id);
  }
  const rendered = { status: batch.status, images: {}, failures: {} };
  for (const fileId of [batch.output_file_id, batch.error_file_id]) {
    if (!fileId) continue;
    const text = await (await client.files.content(fileId)).text();
    for (const line of text.split('\n').filter(Boolean)) {
      const row = JSON.parse(line);
      if (row.response?.status_code === 200) {
        rendered.images[row.custom_id] = Buffer.from(row.response.body.data[0].b64_json, 'base64');
      } else {
        const error = row.error ?? row.response?.body?.error ?? {};
        rendered.failures[row.custom_id] = error.code ?? error.type ?? 'error';
      }
    }
  }
  return rendered;
}

/** One image per prompt through one inline Gemini batch. Returns { status, images, failures }. */
export async function renderGemini(ai, prompts, { model = 'gemini-3.1-flash-image', displayName = 'pipeline', pollMs = 30_000 } = {}) {
  const src = Object.entries(prompts).map(([key, prompt]) => ({
    contents: [{ role: 'user', parts: [{ text: prompt }] }],
    metadata: { key },
    config: { responseModalities: ['IMAGE'] },
  }));
  let job = await ai.batches.create({ model, src, config: { displayName } });
  while (!GEMINI_DONE.has(job.state)) {
    await sleep(pollMs);
    job = await ai.batches.get({ name: job.name });
  }
  const rendered = { status: job.state, images: {}, failures: {} };
  for (const item of job.dest?.inlinedResponses ?? []) {
    const key = item.metadata?.key ?? '?';
    const response = item.response;
    const parts = response?.candidates?.[0]?.content?.parts ?? [];
    const image = parts.find((part) => part.inlineData)?.inlineData?.data;
    if (image) {
      rendered.images[key] = Buffer.from(image, 'base64');
    } else {
      rendered.failures[key] = item.error?.message
        ?? response?.promptFeedback?.blockReason
        ?? response?.candidates?.[0]?.finishReason
        ?? 'no image';
    }
  }
  return rendered;
}
