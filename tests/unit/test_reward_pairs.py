"""Reward-model inputs: question cut first, then the answers' ends, EOS last; over-long pairs dropped or cut;
the margin column; the same ids in training and in scoring."""

import datasets
import pytest

from stackllama_cli.stages.reward import tokenize_pairs

EOS = 0


class WordTokenizer:
    """One token per whitespace-separated word (id = word length), so lengths can be counted by hand."""

    eos_token_id = EOS

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[len(w) for w in t.split()] for t in texts]}


def pairs(*rows, scores=None):
    records = [{"question": q, "response_j": j, "response_k": k} for q, j, k in rows]
    for record, (sj, sk) in zip(records, scores or []):
        record.update(score_j=sj, score_k=sk)
    return datasets.Dataset.from_list(records)


# "Question: q\n\nAnswer: a b" -> Question: / q | Answer: | a / b = 5 words, + EOS = 6 tokens
DS = pairs(("q", "a b", "c"), ("q", "a b c d e f", "c"), ("q", "a", "b c d e f g"))


def test_eos_appended_and_long_pairs_dropped():
    out, over, kept = tokenize_pairs(DS, WordTokenizer(), max_length=6, truncate=False)
    # pair 1: chosen 6 tokens, rejected 5 -> kept; pairs 2 and 3 have a 10-token side -> dropped
    assert over == 2 and kept == [0]
    assert out == {"chosen_ids": [[9, 1, 7, 1, 1, EOS]], "rejected_ids": [[9, 1, 7, 1, EOS]]}


def test_truncate_cuts_the_answer_end_and_keeps_eos_last():
    out, over, kept = tokenize_pairs(DS, WordTokenizer(), max_length=8, truncate=True)
    assert over == 2 and kept == [0, 1, 2]  # counted as "over max length" either way
    # room for question + answer: 8 - 1 (EOS) - 1 (header) = 6; the question goes first, down to 6 // 4 = 1
    # token ("Question:"), then "a b c d e f" loses its last word
    assert out["chosen_ids"][1] == [9, 7, 1, 1, 1, 1, 1, EOS]
    assert out["rejected_ids"][1] == [9, 1, 7, 1, EOS]  # short side untouched
    assert all(len(x) <= 8 and x[-1] == EOS for side in out.values() for x in side)


def test_a_long_question_is_cut_before_the_answers():
    """Cut at the end, a long question left both sides identical (question only): a tie, counted as wrong, and
    no training signal - 31 of 218 beer evaluation pairs at 256 tokens."""
    question = "title words here " + "body " * 40
    ds = pairs((question, "chosen answer starts here " + "more " * 30, "rejected reply begins so " + "blah " * 30))
    out = tokenize_pairs(ds, WordTokenizer(), max_length=32, truncate=True)[0]
    chosen, rejected = out["chosen_ids"][0], out["rejected_ids"][0]
    assert chosen != rejected and len(chosen) == len(rejected) == 32
    assert chosen[-1] == rejected[-1] == EOS
    # room 32 - 1 - 1 = 30: the question keeps 30 // 4 = 7 tokens (Question: + its title and first words),
    # then the header, then the first 23 words of each answer
    head = [9, 5, 5, 4] + [4] * 3 + [7]
    assert chosen[:8] == rejected[:8] == head
    assert chosen[8:12] == [6, 6, 6, 4] and rejected[8:12] == [8, 5, 6, 2]  # both answers' beginnings


def test_reward_token_ids_keeps_header_answer_start_and_eos():
    from stackllama_cli.data.prompts import reward_token_ids

    q, h, a = [1, 2, 3, 4, 5, 6, 7, 8], [9], [10, 11, 12, 13]
    assert reward_token_ids(q, h, a, EOS) == q + h + a + [EOS]
    assert reward_token_ids(q, h, a, EOS, max_length=14) == q + h + a + [EOS]  # fits exactly: untouched
    assert reward_token_ids(q, h, a, EOS, max_length=12) == [1, 2, 3, 4, 5, 6] + h + a + [EOS]  # question first
    # room 10 - 1 - 1 = 8, question floor 8 // 4 = 2: then the answer's end goes
    assert reward_token_ids(q, h, a, EOS, max_length=10) == [1, 2, 3, 4] + h + a + [EOS]
    assert reward_token_ids(q, h, a, EOS, max_length=7) == [1] + h + [10, 11, 12, 13] + [EOS]
    assert reward_token_ids(q, h, [10] * 20, EOS, max_length=7) == [1] + h + [10] * 4 + [EOS]


def test_text_parts_follow_the_prompt_template():
    from stackllama_cli.data.prompts import format_example, reward_text_parts

    question, answer = "  Why is the sky blue?\n\nReally, why?  ", "  Rayleigh scattering. "
    q, h, a = reward_text_parts(question, answer)
    assert q + h + a == format_example(question, answer)
    assert q.endswith("Really, why?") and a == " Rayleigh scattering." and "Answer" in h


def test_nothing_dropped_when_everything_fits():
    out, over, kept = tokenize_pairs(DS, WordTokenizer(), max_length=10, truncate=False)
    assert over == 0 and kept == [0, 1, 2]


def test_margin_column_is_the_score_gap():
    ds = pairs(("q", "a", "b"), ("q", "c", "d"), scores=[(3, 1), (2, 1)])
    out, _, _ = tokenize_pairs(ds, WordTokenizer(), max_length=10, truncate=True, margin="score-gap")
    assert out["margin"] == [2.0, 1.0]
    assert "margin" not in tokenize_pairs(ds, WordTokenizer(), max_length=10, truncate=True)[0]
    from stackllama_cli.core.errors import StackLlamaError

    with pytest.raises(StackLlamaError, match="score_j"):
        tokenize_pairs(DS, WordTokenizer(), max_length=10, truncate=True, margin="score-gap")


def test_scoring_reads_the_same_ids_as_training(tiny_model_dir):
    """eval-rm and ppo (`reward_batch`) score exactly the ids train-rm trained on, also when cut."""
    from transformers import AutoTokenizer

    from stackllama_cli.data.prompts import reward_batch

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    question = "What temperature for a stout? " + "The quick brown fox jumps. " * 12
    ds = pairs((question, "Stouts taste best slightly below cellar temperature. " * 6, "Cold."))
    out = tokenize_pairs(ds, tok, max_length=48, truncate=True)[0]
    batch = reward_batch(tok, [question, question], list(ds["response_j"]) + list(ds["response_k"]), max_length=48)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[1] == 48
    for row, expected in enumerate([out["chosen_ids"][0], out["rejected_ids"][0]]):
        n = int(mask[row].sum())
        assert ids[row, :n].tolist() == expected and expected[-1] == tok.eos_token_id
