from stream_server.decoder.results import Word
from stream_server.engine.stability import LocalAgreement, normalise


def words(text: str, start: float = 0.0, step: float = 0.5) -> list[Word]:
    return [Word(start + i * step, start + (i + 1) * step, f" {w}", 0.9) for i, w in enumerate(text.split())]


def test_commits_only_what_two_hypotheses_agree_on():
    policy = LocalAgreement()
    assert policy.update(words("and so my")) == []
    assert [w.text for w in policy.update(words("and so am I"))] == [" and", " so"]
    assert [w.text for w in policy.tail] == [" am", " I"]


def test_agreement_ignores_case_and_punctuation():
    assert normalise(" Country,") == normalise("country")
    policy = LocalAgreement()
    policy.update(words("Ask not what"))
    assert len(policy.update(words("ask not, what your"))) == 3


def test_committed_words_are_not_committed_again_when_re_decoded():
    policy = LocalAgreement()
    policy.update(words("one two three"))
    policy.update(words("one two three four"))
    assert [w.text for w in policy.committed] == [" one", " two", " three"]
    policy.update(words("one two three four five"))
    committed = [w.text for w in policy.committed]
    assert committed == [" one", " two", " three", " four"]
    assert len(committed) == len(set(committed))


def test_commit_all_takes_the_unseen_rest():
    policy = LocalAgreement()
    policy.update(words("a b c"))
    policy.update(words("a b d"))
    final = policy.commit_all(words("a b d e"))
    assert [w.text for w in final] == [" d", " e"]
    assert policy.tail == []


def test_overlap_at_the_head_is_dropped_even_with_shifted_times():
    policy = LocalAgreement()
    policy.update(words("x y z"))
    policy.update(words("x y z"))
    shifted = words("y z next", start=1.0)  # re-decoded with slightly later timestamps
    assert [w.text for w in policy.commit_all(shifted)] == [" next"]


def test_force_commit_bounds_the_tail():
    policy = LocalAgreement()
    policy.update(words("a b c d"))
    forced = policy.commit_tail_before(1.0)
    assert [w.text for w in forced] == [" a", " b"]


def test_a_re_decoded_word_centred_in_committed_audio_is_not_new():
    policy = LocalAgreement()
    policy.update(words("and so my"))
    policy.update(words("and so my"))  # commits "and so my", ending at 1.5 s
    rewritten = [Word(1.0, 1.3, " am", 0.4), Word(1.3, 1.6, " I", 0.9), Word(1.6, 2.0, " fellow", 0.9)]
    assert [w.text for w in policy.commit_all(rewritten)] == [" fellow"]


def test_an_agreed_word_waits_until_it_is_settled():
    policy = LocalAgreement()
    policy.update(words("a b c d"))
    committed = policy.update(words("a b c d"), settled=lambda w: w.end <= 1.0)
    assert [w.text for w in committed] == [" a", " b"]
    assert [w.text for w in policy.tail] == [" c", " d"]


def test_a_sure_word_past_the_previous_hypothesis_commits_from_one_decode():
    policy = LocalAgreement()
    policy.update(words("ask not"))
    hypothesis = words("ask not what your")
    hypothesis[3] = Word(hypothesis[3].start, hypothesis[3].end, " your", 0.5)  # not sure
    committed = policy.update(hypothesis, sure=lambda w: w.probability >= 0.9)
    assert [w.text for w in committed] == [" ask", " not", " what"]
    assert [w.text for w in policy.tail] == [" your"]


def test_no_word_commits_from_one_decode_after_a_disagreement():
    policy = LocalAgreement()
    policy.update(words("ask not"))
    committed = policy.update(words("asked not what"), sure=lambda w: True)
    assert committed == []
