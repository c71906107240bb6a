"""Compatible live protocols, each an adapter over a live run: Twilio Media Streams, Deepgram,
OpenAI Realtime."""
