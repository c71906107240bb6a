"""Scoring transcripts against the shared audio's references."""

from __future__ import annotations

from functools import cache

import jiwer
from faster_whisper.audio import decode_audio
from whisper_normalizer.english import EnglishTextNormalizer

from tests.conftest import audio_path

_normalize = EnglishTextNormalizer()


def reference(name: str) -> str:
    """The reference transcript of a clip, from the audio folder's manifest."""
    manifest = audio_path("manifest.tsv").read_text().splitlines()
    header = manifest[0].split("\t")
    for line in manifest[1:]:
        row = dict(zip(header, line.split("\t")))
        if row["file"] == name:
            return row["reference_transcript"]
    raise KeyError(name)


def wer(reference_text: str, hypothesis: str) -> float:
    """Word error rate after Whisper's English normaliser."""
    return jiwer.wer(_normalize(reference_text), _normalize(hypothesis))


def word_errors(reference_text: str, hypothesis: str) -> tuple[int, int, int]:
    """(substituted, deleted, inserted) words, after Whisper's English normaliser."""
    counts = jiwer.process_words(_normalize(reference_text), _normalize(hypothesis))
    return counts.substitutions, counts.deletions, counts.insertions


CALL = "en_call_stereo_8k.wav"
"""A two-channel call: agent on channel 0, customer on channel 1 (turns in its .turns.tsv)."""


def channel_references(name: str = CALL) -> dict[int, str]:
    """Per-channel references of a multichannel clip (`<channel>\\t<text>` lines in its .txt)."""
    lines = audio_path(name).with_suffix(".txt").read_text().splitlines()
    return {int(channel): text for channel, text in (line.split("\t", 1) for line in lines if line.strip())}


def call_turns(name: str = CALL) -> list[int]:
    """The channel of each turn of a call, in time order."""
    rows = audio_path(name).with_suffix(".turns.tsv").read_text().splitlines()[1:]
    return [int(row.split("\t")[2]) for row in rows if row.strip()]


def leaked_words(hypothesis: str, own: str, other: str) -> set[str]:
    """Words of `hypothesis` found only in the other channel's reference: crosstalk."""
    def words(text: str) -> set[str]:
        return set(_normalize(text).split())

    return words(hypothesis) & (words(other) - words(own))


@cache
def offline_call_wer(model) -> dict[int, float]:
    """Each channel of the call decoded alone, offline, as a file is (beam 5, Silero VAD): the
    accuracy a per-channel transcript is measured against."""
    from stream_server.decoder.whisper import TranscribeOptions

    refs = channel_references()
    split = decode_audio(str(audio_path(CALL)), sampling_rate=16000, split_stereo=True)
    return {c: wer(refs[c], model.transcribe(audio, TranscribeOptions()).text) for c, audio in enumerate(split)}
