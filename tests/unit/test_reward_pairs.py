"""Pair tokenization for the reward model: EOS appended, over-long pairs dropped (counted) or cut."""

import datasets

from stackllama_cli.training.reward import tokenize_pairs

EOS = 0


class WordTokenizer:
    """One token per whitespace-separated word (id = word length), so lengths can be counted by hand."""

    eos_token_id = EOS

    def __call__(self, texts):
        return {"input_ids": [[len(w) for w in t.split()] for t in texts]}


def pairs(*rows):
    return datasets.Dataset.from_list([{"question": q, "response_j": j, "response_k": k} for q, j, k in rows])


# "Question: q\n\nAnswer: a b" -> Question: / q / Answer: / a / b = 5 words, + EOS = 6 tokens
DS = pairs(("q", "a b", "c"), ("q", "a b c d e f", "c"), ("q", "a", "b c d e f g"))


def test_eos_appended_and_long_pairs_dropped():
    out, dropped = tokenize_pairs(DS, WordTokenizer(), max_length=6, truncate=False)
    # pair 1: chosen 6 tokens, rejected 5 -> kept; pairs 2 and 3 have a 10-token side -> dropped
    assert dropped == 2
    assert out == {"chosen_ids": [[9, 1, 7, 1, 1, EOS]], "rejected_ids": [[9, 1, 7, 1, EOS]]}


def test_truncate_cuts_both_sides_and_keeps_eos_last():
    out, dropped = tokenize_pairs(DS, WordTokenizer(), max_length=6, truncate=True)
    assert dropped == 2  # counted as "over max length" either way, so the user sees how many were cut
    assert len(out["chosen_ids"]) == 3
    assert out["chosen_ids"][1] == [9, 1, 7, 1, 1, EOS]  # "a b c d e f" cut to "a b" + EOS
    assert out["rejected_ids"][1] == [9, 1, 7, 1, EOS]  # short side untouched
    assert out["rejected_ids"][2] == [9, 1, 7, 1, 1, EOS]
    assert all(len(x) <= 6 and x[-1] == EOS for side in out.values() for x in side)


def test_nothing_dropped_when_everything_fits():
    out, dropped = tokenize_pairs(DS, WordTokenizer(), max_length=10, truncate=False)
    assert dropped == 0 and len(out["chosen_ids"]) == 3
