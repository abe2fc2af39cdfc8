"""Recorded-response simulators of the Gemini and OpenAI batch + files APIs."""
