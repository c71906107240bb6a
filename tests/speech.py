"""Scoring transcripts against the shared audio's references."""

from __future__ import annotations

import jiwer
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
