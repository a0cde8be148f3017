"""Pair tokenization for the reward model: EOS appended, over-long pairs dropped (counted) or cut."""

import datasets

from stackllama_cli.stages.reward import tokenize_pairs

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


def test_reward_token_ids_keep_eos_last_when_cut():
    from stackllama_cli.data.prompts import reward_token_ids

    assert reward_token_ids([5, 6, 7], EOS) == [5, 6, 7, EOS]
    assert reward_token_ids([5, 6, 7], EOS, max_length=4) == [5, 6, 7, EOS]  # fits exactly: untouched
    assert reward_token_ids([5, 6, 7], EOS, max_length=3) == [5, 6, EOS]  # plain truncation would end at 7


def test_scoring_batches_read_the_reward_at_eos_for_cut_texts(tiny_model_dir):
    """eval-rm and ppo score like train-rm: a text cut to --max-length still ends in EOS before the padding."""
    from transformers import AutoTokenizer

    from stackllama_cli.data.prompts import reward_batch

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    batch = reward_batch(tok, ["Question: q\n\nAnswer: short", "Question: q\n\nAnswer: " + "long words " * 40],
                         max_length=16)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[1] == 16 and mask[1].sum() == 16  # the long text was cut to 16 tokens
    for row in range(2):
        assert ids[row, int(mask[row].sum()) - 1] == tok.eos_token_id  # right padding, EOS last
