// The Node pipeline tested offline against `costguard simulate serve` (node --test).
// Needs `costguard` on PATH (or its path in COSTGUARD); see docs/testing-offline.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { GoogleGenAI } from '@google/genai';
import { renderGemini, renderOpenAI } from './pipeline.mjs';

const PROMPTS = { fox: 'a red fox in the snow', owl: 'an owl at dusk', odd: 'a rude gesture [refuse]' };
const RECORDING = fileURLToPath(new URL('../recordings/nightly', import.meta.url));

/** Start `costguard simulate serve --port 0 ...args`; resolves to its URL once it listens. */
async function simulator(t, ...args) {
  const child = spawn(process.env.COSTGUARD ?? 'costguard', ['simulate', 'serve', '--port', '0', '--output', 'json', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => child.kill('SIGTERM'));
  // --output json: its first line on stdout is {"event": "listening", "url": ..., "pid": ...}
  for await (const line of createInterface({ input: child.stdout })) return JSON.parse(line).url;
  throw new Error('costguard simulate serve exited before listening (its error is above)');
}

function clients(baseUrl) {
  return {
    openai: new OpenAI({ apiKey: 'sk-test', baseURL: `${baseUrl}/v1` }),
    gemini: new GoogleGenAI({ apiKey: 'test-key', httpOptions: { baseUrl } }),
  };
}

test('both pipelines render every prompt against the simulator', async (t) => {
  const { openai, gemini } = clients(await simulator(t));
  const openaiRun = await renderOpenAI(openai, PROMPTS, { pollMs: 50 });
  assert.equal(openaiRun.status, 'completed');
  assert.deepEqual(Object.keys(openaiRun.images).sort(), ['fox', 'owl']);
  assert.deepEqual(openaiRun.failures, { odd: 'moderation_blocked' });
  const geminiRun = await renderGemini(gemini, PROMPTS, { pollMs: 50 });
  assert.equal(geminiRun.status, 'JOB_STATE_SUCCEEDED');
  assert.deepEqual(Object.keys(geminiRun.images).sort(), ['fox', 'owl']);
});

test('one scenario per job: metadata and display names', async (t) => {
  const { openai, gemini } = clients(await simulator(t));
  const cancelled = await renderOpenAI(openai, PROMPTS, { metadata: { cg_scenario: 'cancelled' }, pollMs: 50 });
  assert.equal(cancelled.status, 'cancelled');
  assert.equal(cancelled.failures.odd, 'batch_cancelled');
  const failed = await renderGemini(gemini, PROMPTS, { displayName: 'nightly cg_scenario=failed', pollMs: 50 });
  assert.equal(failed.status, 'JOB_STATE_FAILED');
  assert.deepEqual(failed.images, {});
});

test('a recorded run replays with any poll interval and the same results', async (t) => {
  const { openai, gemini } = clients(await simulator(t, '--scenario', RECORDING));
  const openaiRun = await renderOpenAI(openai, PROMPTS, { pollMs: 0 });
  assert.equal(openaiRun.status, 'completed');
  assert.deepEqual(Object.keys(openaiRun.images).sort(), ['fox', 'owl']);
  assert.deepEqual(openaiRun.failures, { odd: 'moderation_blocked' });
  const geminiRun = await renderGemini(gemini, PROMPTS, { displayName: 'nightly', pollMs: 0 });
  assert.equal(geminiRun.status, 'JOB_STATE_SUCCEEDED');
  assert.deepEqual(geminiRun.failures, { odd: 'NO_IMAGE' });
});
