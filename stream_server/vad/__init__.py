"""Cut 16 kHz PCM into speech utterances."""
