"""Run both example pipelines once, as a nightly job would (how recordings/nightly was made).

    OPENAI_API_KEY=... GEMINI_API_KEY=... python nightly.py

The SDKs read OPENAI_BASE_URL and GOOGLE_GEMINI_BASE_URL, so pointing them at
`costguard simulate record` records this run (docs/testing-offline.md, "Record a run").
"""

from __future__ import annotations

import json
import os

import pipeline_gemini
import pipeline_openai
from google import genai
from openai import OpenAI

PROMPTS = {
    "fox": "a red fox in the snow",
    "owl": "an owl at dusk",
    "odd": "a rude gesture [refuse]",
}


def main() -> None:
    """Render PROMPTS on both providers; print a one-line summary per provider."""
    poll_s = float(os.environ.get("POLL_S", "30"))
    openai_run = pipeline_openai.render(OpenAI(), PROMPTS, poll_s=poll_s)
    gemini_run = pipeline_gemini.render(
        genai.Client(), PROMPTS, display_name="nightly", poll_s=poll_s
    )
    for name, run in (("openai", openai_run), ("gemini", gemini_run)):
        summary = {"status": run.status, "images": sorted(run.images), "failures": run.failures}
        print(name, json.dumps(summary))  # noqa: T201 - a command-line script


if __name__ == "__main__":
    main()
