"""File and account routes: one request, one answer (OpenAI's transcriptions and files, v2, usage,
providers, metrics, the API document and the captions page)."""
