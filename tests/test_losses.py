import math

import numpy as np
import pytest
import torch

from w2s.engine.losses import LOSSES, build_loss


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


# Helpers and tests for logconf, entropy and window.


def logits_for(*p1: float) -> torch.Tensor:
    """Logits (0, log-odds) whose softmax gives these p(class 1)."""
    return torch.tensor([[0.0, math.log(p / (1 - p))] for p in p1], requires_grad=True)


def xent(p1: float, label: float) -> float:
    return -(label * math.log(p1) + (1 - label) * math.log(1 - p1))


def entropy(p1: float) -> float:
    return -(p1 * math.log(p1) + (1 - p1) * math.log(1 - p1))


def hardened_targets(loss_fn, p1: list[float], weak: list[float]) -> list[int]:
    """The 0/1 targets a logconf loss at full weight (α = 1) assigns, read from the gradient's sign:
    d loss / d logit1 = (p1 - target) / B, negative exactly when the target is 1."""
    logits = logits_for(*p1)
    loss_fn(logits, torch.tensor(weak), 0.99).backward()
    return [int(g < 0) for g in logits.grad[:, 1]]


def test_every_loss_accepts_train_labels():
    # The caller passes the training set's labels to whichever loss the config names.
    labels = np.array([0.1, 0.6, 0.8])
    for name in LOSSES:
        build_loss(name, train_labels=labels)(logits_for(0.7), torch.tensor([0.6]), 0.5)


def test_unknown_loss_lists_every_known_one():
    with pytest.raises(ValueError) as e:
        build_loss("nope")
    for name in ("xent", "logconf", "entropy", "window"):
        assert name in str(e.value)


# logconf


def test_logconf_alpha_ramps_linearly_not_in_a_step():
    loss_fn = build_loss("logconf", alpha_max=0.5, warmup_frac=0.2)
    a0, a1, a2 = loss_fn.alpha(0.0), loss_fn.alpha(0.05), loss_fn.alpha(0.1)
    # openai/weak-to-strong's jump (0.05 until 10%, then 0.5) fails both checks below.
    assert a0 == 0 < a1 < a2 < 0.5
    assert a1 == pytest.approx(0.125) and a2 == pytest.approx(0.25)
    assert loss_fn.alpha(0.2) == loss_fn.alpha(0.9) == 0.5


def test_logconf_without_warmup_is_at_full_weight_from_the_start():
    assert build_loss("logconf", alpha_max=0.75, warmup_frac=0.0).alpha(0.0) == 0.75


def test_logconf_matches_hand_computation():
    # Training set: weak labels of mean 0.65, so round(0.35 x 4) = 1, the lowest of the batch's 4 predictions,
    # hardens to 0.
    loss_fn = build_loss("logconf", train_labels=np.array([0.2, 0.9, 0.8, 0.7]), alpha_max=0.5, warmup_frac=0.2)
    p1, weak = [0.1, 0.6, 0.75, 0.9], [0.2, 0.9, 0.8, 0.7]
    loss = loss_fn(logits_for(*p1), torch.tensor(weak), 0.1)
    # α = 0.25 at progress 0.1; hardened = (0, 1, 1, 1).
    targets = [0.75 * 0.2 + 0.25 * 0, 0.75 * 0.9 + 0.25, 0.75 * 0.8 + 0.25, 0.75 * 0.7 + 0.25]
    expected = sum(xent(p, t) for p, t in zip(p1, targets)) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_logconf_at_alpha_zero_is_xent():
    p1, weak = [0.1, 0.6, 0.75, 0.9], torch.tensor([0.2, 0.9, 0.8, 0.3])
    logconf = build_loss("logconf", alpha_max=0.0)(logits_for(*p1), weak, 0.5)
    assert logconf.item() == pytest.approx(build_loss("xent")(logits_for(*p1), weak, 0.5).item(), abs=1e-6)


def test_logconf_threshold_keeps_the_training_set_class_balance():
    # Training weak labels of mean 0.75; the batch's own labels (all 0.9) must not be what counts.
    loss_fn = build_loss("logconf", train_labels=np.array([0.5, 0.7, 0.9, 0.9]), alpha_max=1.0, warmup_frac=0.0)
    p1 = [0.3, 0.9, 0.05, 0.6, 0.8, 0.2, 0.7, 0.4]
    # Exactly the top 6 of 8 (0.3 and above) harden to 1, including predictions below 1/2.
    assert hardened_targets(loss_fn, p1, [0.9] * 8) == [1, 1, 0, 1, 1, 0, 1, 1]


def test_logconf_class_balance_is_the_mean_of_the_soft_labels_not_the_share_above_one_half():
    """As in Burns et al.: weak labels that lean to class 1 by a little (6 of 8 at 0.55, 2 at 0.15: mean 0.45)
    harden round(0.55 x 8) = 4 predictions to 0; counting labels below 1/2 would harden only 2, and push the
    student further toward the weak model's lean."""
    loss_fn = build_loss("logconf", train_labels=np.array([0.55] * 6 + [0.15] * 2), alpha_max=1.0, warmup_frac=0.0)
    p1 = [0.3, 0.9, 0.05, 0.6, 0.8, 0.2, 0.7, 0.4]
    assert hardened_targets(loss_fn, p1, [0.9] * 8) == [0, 1, 0, 1, 1, 0, 1, 0]


def test_logconf_takes_the_class_balance_from_the_batch_without_train_labels():
    loss_fn = build_loss("logconf", alpha_max=1.0, warmup_frac=0.0)
    p1 = [0.3, 0.9, 0.05, 0.6, 0.8, 0.2, 0.7, 0.4]
    weak = [0.6, 0.6, 0.7, 0.8, 0.9, 0.9, 0.6, 0.9]  # mean 0.75: the lowest 2 of 8 harden to 0
    assert hardened_targets(loss_fn, p1, weak) == [1, 1, 0, 1, 1, 0, 1, 1]


def hardened_at(loss_fn, step: int, p1: list[float], weak: list[float]) -> list[int]:
    """hardened_targets for a micro-batch of optimiser step `step` (of 100)."""
    logits = logits_for(*p1)
    loss_fn(logits, torch.tensor(weak), step / 100).backward()
    return [int(g < 0) for g in logits.grad[:, 1]]


def balanced_logconf():
    return build_loss("logconf", train_labels=np.array([0.1, 0.2, 0.8, 0.9]), alpha_max=1.0, warmup_frac=0.0)


def test_logconf_hardens_a_drifted_batch_against_itself_not_against_earlier_steps():
    # The student's output has moved down as a whole since step 1. Against step 1's predictions every
    # example of step 2 would fall below the threshold and harden to 0, pushing the drift further; against
    # its own batch, the upper half still hardens to 1, as the weak labels' class balance says.
    loss_fn = balanced_logconf()
    hardened_at(loss_fn, 1, [0.45, 0.5, 0.55, 0.6], [0.9] * 4)
    assert hardened_at(loss_fn, 2, [0.2, 0.3, 0.25, 0.35], [0.9] * 4) == [0, 1, 0, 1]


def test_logconf_ranks_equal_predictions_by_arrival_so_that_they_keep_the_class_balance():
    # A zero-initialised head predicts exactly 1/2 everywhere at first: a threshold test would harden them
    # all to 0 (none is above it); counting gives half of them to each class.
    assert hardened_at(balanced_logconf(), 0, [0.5] * 4, [0.9] * 4) == [0, 0, 1, 1]


def test_logconf_tops_up_small_micro_batches_with_the_previous_step_and_no_older_one():
    loss_fn = balanced_logconf()
    hardened_at(loss_fn, 1, [0.1, 0.2, 0.3, 0.4], [0.9] * 4)
    hardened_at(loss_fn, 2, [0.6, 0.7], [0.9] * 2)
    hardened_at(loss_fn, 2, [0.8, 0.9], [0.9] * 2)
    # Step 3's lone 0.5 is ranked with step 2's latest three, and is the lowest of (0.7, 0.8, 0.9, 0.5): a 0.
    # Had step 1 counted too, 0.5 would be in the upper half of all nine predictions.
    assert hardened_at(loss_fn, 3, [0.5], [0.9]) == [0]
    # The next micro-batch of step 3 joins the window, which still holds one effective batch (4): of
    # (0.8, 0.9, 0.5, 0.85), 0.85 is in the upper half; of (0.9, 0.5, 0.85, 0.82), 0.82 is in the lower one.
    assert hardened_at(loss_fn, 3, [0.85], [0.9]) == [1]
    assert hardened_at(loss_fn, 3, [0.82], [0.9]) == [0]


def test_logconf_takes_the_class_balance_from_the_same_window_without_train_labels():
    loss_fn = build_loss("logconf", alpha_max=1.0, warmup_frac=0.0)
    hardened_at(loss_fn, 1, [0.6, 0.7, 0.8, 0.9], [0.1] * 4)
    hardened_at(loss_fn, 2, [0.1, 0.2, 0.3, 0.4], [0.9] * 4)
    # A lone example's own label (0.1) would harden it to 0. In the window (step 2's last three and this one)
    # the weak labels' mean is 0.7, so round(0.3 x 4) = 1, only the lowest of (0.2, 0.3, 0.4, 0.35), hardens
    # to 0. Had step 1 counted too, the mean would be 0.367 of nine, and 0.35, fourth lowest, would harden to 0.
    assert hardened_at(loss_fn, 3, [0.35], [0.1]) == [1]


def test_logconf_gradient_pulls_toward_the_hardened_prediction():
    # A student leaning to class 1 against a weak label of 0.3: at α = 0.5 the target is 0.5·0.3 + 0.5·1 = 0.65,
    # so its p1 = 0.6 is pushed up, where plain xent would push it down.
    loss_fn = build_loss("logconf", train_labels=np.array([0.1, 0.9]), alpha_max=0.5, warmup_frac=0.0)
    logits = logits_for(0.1, 0.6)
    loss_fn(logits, torch.tensor([0.3, 0.3]), 0.5).backward()
    assert logits.grad[1, 1] == pytest.approx((0.6 - 0.65) / 2, abs=1e-6)
    assert logits.grad[1, 1] < 0 < logits.grad[1, 0]


def test_logconf_rejects_bad_parameters():
    for params in ({"alpha_max": 1.5}, {"alpha_max": -0.1}, {"warmup_frac": 1.2}):
        with pytest.raises(ValueError):
            build_loss("logconf", **params)


# entropy


def test_entropy_matches_hand_computation_during_and_after_warmup():
    loss_fn = build_loss("entropy", alpha=0.5, warmup_frac=0.2)
    after = loss_fn(logits_for(0.75), torch.tensor([0.4]), 0.5)
    during = loss_fn(logits_for(0.75), torch.tensor([0.4]), 0.1)
    assert after.item() == pytest.approx(xent(0.75, 0.4) + 0.5 * entropy(0.75), abs=1e-6)
    assert during.item() == pytest.approx(xent(0.75, 0.4) + 0.25 * entropy(0.75), abs=1e-6)


def test_entropy_at_alpha_zero_is_xent():
    weak = torch.tensor([0.2, 0.9, 0.5])
    loss = build_loss("entropy", alpha=0.0)(logits_for(0.3, 0.6, 0.95), weak, 0.5)
    assert loss.item() == pytest.approx(build_loss("xent")(logits_for(0.3, 0.6, 0.95), weak, 0.5).item(), abs=1e-6)


def test_entropy_term_has_a_gradient_toward_confidence():
    # Each weak label equals the prediction, so the xent gradient is zero and only the entropy term remains:
    # a detached entropy would leave the gradient at zero.
    logits = logits_for(0.75, 0.25)
    build_loss("entropy", alpha=0.5, warmup_frac=0.0)(logits, torch.tensor([0.75, 0.25]), 0.5).backward()
    # d H / d logit1 = -p1·p0·log(p1/p0), averaged over the batch of 2 and weighted by 0.5.
    assert logits.grad[0, 1] == pytest.approx(-0.5 * 0.75 * 0.25 * math.log(3) / 2, abs=1e-6)
    # Descending raises p1 where it leans to 1 and lowers it where it leans to 0.
    assert logits.grad[0, 1] < 0 < logits.grad[0, 0]
    assert logits.grad[1, 0] < 0 < logits.grad[1, 1]
    # One step of gradient descent makes both predictions more confident.
    with torch.no_grad():
        p1 = (logits - logits.grad).softmax(-1)[:, 1]
    assert p1[0] > 0.75 and p1[1] < 0.25


def test_entropy_rejects_bad_parameters():
    for params in ({"alpha": -1.0}, {"warmup_frac": -0.1}):
        with pytest.raises(ValueError):
            build_loss("entropy", **params)


# window


def test_window_matches_hand_computation():
    # Only the first example (p1 = 0.6) is inside radius 0.2; the sum is divided by the batch size 3.
    loss = build_loss("window", radius=0.2)(logits_for(0.6, 0.9, 0.15), torch.tensor([0.8, 0.1, 0.7]), 0.0)
    assert loss.item() == pytest.approx(xent(0.6, 0.8) / 3, abs=1e-6)


def test_window_gradient_only_reaches_unsure_examples():
    logits = logits_for(0.6, 0.9)
    build_loss("window", radius=0.2)(logits, torch.tensor([0.8, 0.1]), 0.0).backward()
    assert logits.grad[0, 1] == pytest.approx((0.6 - 0.8) / 2, abs=1e-6)
    assert torch.all(logits.grad[1] == 0)


def test_window_admitting_everything_is_xent():
    p1, weak = [0.01, 0.3, 0.5, 0.99], torch.tensor([0.2, 0.9, 0.5, 0.3])
    loss = build_loss("window", radius=0.5)(logits_for(*p1), weak, 0.0)
    assert loss.item() == pytest.approx(build_loss("xent")(logits_for(*p1), weak, 0.0).item(), abs=1e-6)


def test_window_with_no_unsure_example_is_a_zero_that_backpropagates():
    logits = logits_for(0.9, 0.05)
    loss = build_loss("window", radius=0.2)(logits, torch.tensor([0.3, 0.7]), 0.0)
    assert loss.item() == 0 and loss.grad_fn is not None
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_window_midweak_radius_is_the_median_distance_of_weak_labels_from_one_half():
    # Distances 0.4, 0.05, 0.2, 0.45, 0.1: median 0.2; with an even count the two middle ones are averaged.
    odd = build_loss("window", train_labels=np.array([0.1, 0.45, 0.7, 0.95, 0.6]), radius="midweak")
    even = build_loss("window", train_labels=torch.tensor([0.1, 0.45, 0.7, 0.95]), radius="midweak")
    assert odd.radius == pytest.approx(0.2) and even.radius == pytest.approx(0.3)
    # The resolved radius is what admits examples: 0.69 is inside 0.2 of 1/2, 0.71 is not.
    logits = logits_for(0.69, 0.71)
    odd(logits, torch.tensor([0.0, 0.0]), 0.0).backward()
    assert logits.grad[0, 1] > 0 and torch.all(logits.grad[1] == 0)


def test_window_midweak_without_train_labels_says_what_is_missing():
    with pytest.raises(ValueError, match="train_labels"):
        build_loss("window", radius="midweak")


def test_window_rejects_bad_radii():
    for radius in (0.0, -0.1, 0.6, "median"):
        with pytest.raises(ValueError):
            build_loss("window", radius=radius)
