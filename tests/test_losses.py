import math

import torch

from w2s.losses import build_loss


def test_xent_matches_hand_computation_on_soft_labels():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p1 = 0.75
    loss = build_loss("xent")(logits, torch.tensor([0.4]), 0.0)
    expected = -(0.6 * math.log(0.25) + 0.4 * math.log(0.75))
    assert abs(loss.item() - expected) < 1e-6


def test_xent_gradient_moves_prediction_toward_the_label():
    logits = torch.zeros(1, 2, requires_grad=True)
    build_loss("xent")(logits, torch.tensor([0.9]), 0.0).backward()
    # Descending the gradient raises logit 1 and lowers logit 0, i.e. raises p1 toward 0.9.
    assert logits.grad[0, 1] < 0 < logits.grad[0, 0]


def test_unknown_loss_lists_known_ones():
    try:
        build_loss("nope")
    except ValueError as e:
        assert "xent" in str(e)
    else:
        raise AssertionError("expected ValueError")
