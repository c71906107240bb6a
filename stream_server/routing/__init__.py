"""Provider routing: several transcription backends, one chosen per request (issue 8)."""
