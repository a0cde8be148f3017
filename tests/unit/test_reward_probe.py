"""The probe's pieces: a pairwise logistic head, question-grouped folds, features read where the classifier reads."""

import torch

from stackllama_cli.stages.reward_probe import fit_head, folds, last_token_features, train_probe


def separable(n=60, dim=8, seed=0):
    """Features whose first coordinate decides the preference; the others are noise at a larger scale."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(2 * n, dim, generator=g, dtype=torch.float64) * 3
    feats[:n, 0] = 1.0 + torch.rand(n, generator=g, dtype=torch.float64)  # chosen: positive
    feats[n:, 0] = -1.0 - torch.rand(n, generator=g, dtype=torch.float64)  # rejected: negative
    return feats, list(range(n)), list(range(n, 2 * n))


def test_fit_head_separates_and_l2_shrinks():
    feats, j, k = separable()
    diffs = feats[j] - feats[k]
    w, loss = fit_head(diffs, l2=1e-3)
    assert ((diffs @ w) > 0).all() and loss < 0.1
    w_strong, loss_strong = fit_head(diffs, l2=10.0)
    assert w_strong.norm() < w.norm() and loss_strong > loss


def test_margin_pushes_the_gap_wider():
    feats, j, k = separable()
    diffs = feats[j] - feats[k]
    w0, _ = fit_head(diffs, l2=1e-2)
    w2, _ = fit_head(diffs, torch.full((len(diffs),), 2.0, dtype=torch.float64), l2=1e-2)
    assert (diffs @ w2).mean() > (diffs @ w0).mean()


def test_folds_keep_a_question_together():
    groups = ["a", "a", "b", "c", "c", "c", "d", "e", "f"]
    parts = folds(groups, k=3)
    assert sorted(i for p in parts for i in p) == list(range(len(groups)))
    for p in parts:
        for g in {groups[i] for i in p}:
            assert all(i in p for i, h in enumerate(groups) if h == g)


def test_train_probe_finds_the_signal_direction():
    feats, j, k = separable()
    w, info = train_probe(feats, j, k, groups=[i // 3 for i in range(len(j))])
    assert info["train_accuracy"] == 1.0 and info["l2"] in info["cv_log_loss"]
    assert abs(w[0]) > 5 * w[1:].abs().max()  # the decisive coordinate dominates the raw-feature weight
    rewards = feats @ w
    assert (rewards[j] > rewards[k]).all()


def test_features_are_what_the_score_head_reads(tiny_model_dir):
    """With w copied into `score`, the classifier's own logits equal features . w (padding included)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from stackllama_cli.data.prompts import pad_reward_ids, reward_inputs

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1).eval()
    model.config.pad_token_id = tok.pad_token_id
    rows = reward_inputs(tok, ["What is a stout?"] * 3, ["Dark beer.", "A dark ale brewed with roasted malt.", "x"])
    feats = last_token_features(model, tok, rows, batch_size=2)
    w = torch.randn(feats.shape[1], dtype=torch.float64)
    with torch.no_grad():
        model.score.weight.copy_(w.float().view(1, -1))
        logits = model(**pad_reward_ids(tok, rows)).logits[:, 0].double()
    torch.testing.assert_close(feats @ w, logits, atol=1e-4, rtol=1e-4)
