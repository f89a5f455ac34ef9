"""Hand-computed statistics and element scores for every built-in score, plus the registry's contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import adalora_scores
from adalora_scores import Score, create_score, ema_, list_scores, register_score
from adalora_scores.allocation import AdaptedMatrix, TripletLayout
from adalora_scores.scores import GradientMoments
from adalora_scores.scores import base as score_base


def one_matrix_layout(rank: int = 2, out_features: int = 3, in_features: int = 2) -> TripletLayout:
    matrix = AdaptedMatrix(
        name="layer.lora_E.default",
        right=nn.Parameter(torch.zeros(rank, in_features)),
        value=nn.Parameter(torch.zeros(rank, 1)),
        left=nn.Parameter(torch.zeros(out_features, rank)),
    )
    return TripletLayout([matrix])


def run(score: Score, observations: list[tuple[float, float]]) -> torch.Tensor:
    """Feed constant (w, g) observations to every entry; return the element scores after the last one."""
    layout = one_matrix_layout()
    score.bind(layout)
    param = torch.empty(layout.numel)
    for w, g in observations:
        param.fill_(w)
        grad = torch.full((layout.numel,), g)
        # per-example scores read moments instead: N = 2 examples with gradients 0 and 2g (m1 = g, m2 = 2g²)
        score.observe(param, grad, GradientMoments(mean=grad, mean_square=2 * grad * grad, count=2))
    return score.element_scores(param)


# (w, g) = (2, 0.5) then (2, 1.5) or (-1, -3); β = 0.5 everywhere so the numbers are exact in binary.
@pytest.mark.parametrize(
    "name,options,observations,expected",
    [
        # I = 1, 3: Ī = 0.5, 1.75; Ū = 0.25, 0.125 + 0.5·|3 − 1.75| = 0.75; s = Ī·Ū = 1.3125
        ("sensitivity", {"beta1": 0.5, "beta2": 0.5}, [(2, 0.5), (2, 1.5)], 1.3125),
        # I = −w·g = −1, −3: Ī = −0.5, −1.75 (signed, no abs)
        ("movement", {"beta1": 0.5}, [(2, 0.5), (-1, -3)], -1.75),
        # Ū = 0.25, 0.75 as for sensitivity; s = −1.75 · 0.75
        ("movement", {"beta1": 0.5, "beta2": 0.5, "use_uncertainty": True}, [(2, 0.5), (-1, -3)], -1.3125),
        # g² = 0.25, 2.25: F = 0.125, 0.0625 + 1.125
        ("fisher", {"beta": 0.5}, [(2, 0.5), (2, 1.5)], 1.1875),
        # g = 1, 3: m1 = 1.75, m2 = 4.75; /(1 − 0.25): m̂1 = 7/3, m̂2 = 19/3; r = (49/9) / (8/9) = 6.125
        ("gsnr", {"beta": 0.5}, [(2, 1.0), (2, 3.0)], 6.125),
        # bounded: m̂1² / m̂2 = (49/9) / (19/3) = 49/57
        ("gsnr", {"beta": 0.5, "bounded": True}, [(2, 1.0), (2, 3.0)], 49 / 57),
        # I = |w·g| = 1, 3: Ī = 0.5, 0.25 + 1.5 = 1.75, no uncertainty factor
        ("sensitivity_only", {"beta1": 0.5}, [(2, 0.5), (2, 1.5)], 1.75),
        # (w·g)² = 1, 9: T = 0.5, 0.25 + 4.5 = 4.75
        ("taylor", {"beta": 0.5}, [(2, 0.5), (2, 1.5)], 4.75),
        # (w·g)² = (−1·−3)² = 9 after (2·0.5)² = 1: same 4.75, the sign of w·g does not matter
        ("taylor", {"beta": 0.5}, [(2, 0.5), (-1, -3)], 4.75),
    ],
)
def test_hand_computed_element_scores(name, options, observations, expected):
    scores = run(create_score(name, **options), observations)
    torch.testing.assert_close(scores, torch.full_like(scores, expected), rtol=1e-5, atol=0)


def test_magnitude_is_the_absolute_singular_value():
    layout = one_matrix_layout(rank=2, out_features=3, in_features=2)
    group = layout.groups[0]
    score = create_score("magnitude")
    score.bind(layout)
    param = torch.full((layout.numel,), 5.0)  # P and Q entries must not count
    param[group.value] = torch.tensor([-0.5, 0.25])
    score.observe(param, torch.ones(layout.numel))
    element = score.element_scores(param)
    assert torch.count_nonzero(element) == 2
    torch.testing.assert_close(layout.triplet_scores(element), torch.tensor([0.5, 0.25]))  # S_i = |λ_i|


def test_sensitivity_statistics_by_hand():
    score = create_score("sensitivity", beta1=0.5, beta2=0.5)
    run(score, [(2, 0.5), (2, 1.5)])
    assert torch.allclose(score.importance, torch.tensor(1.75))
    assert torch.allclose(score.uncertainty, torch.tensor(0.75))


def test_gsnr_epsilon_is_relative_to_gradient_scale():
    # a constant gradient has zero variance: r = m̂1² / (eps · mean m̂2) = 1 / eps, whatever the gradient's scale
    for g in (1e-4, 1.0):
        scores = run(create_score("gsnr", eps=1e-3), [(1, g)] * 3)
        torch.testing.assert_close(scores, torch.full_like(scores, 1e3), rtol=1e-4, atol=0)


def test_triplet_scores_sum_value_and_vector_means():
    layout = one_matrix_layout(rank=2, out_features=3, in_features=2)
    group = layout.groups[0]
    element = torch.zeros(layout.numel)
    element[group.right] = torch.tensor([[1.0, 3.0], [0.0, 0.0]]).reshape(-1)  # Q rows: means 2, 0
    element[group.left] = torch.tensor([[3.0, 0.0], [3.0, 0.0], [3.0, 6.0]]).reshape(-1)  # P cols: means 3, 2
    element[group.value] = torch.tensor([10.0, 20.0])
    torch.testing.assert_close(layout.triplet_scores(element), torch.tensor([15.0, 22.0]))


def test_registry_lists_builtins():
    assert {"sensitivity", "movement", "fisher", "gsnr"} <= set(list_scores())


def test_duplicate_name_fails_loudly():
    with pytest.raises(ValueError, match="already registered"):

        @register_score("fisher")
        class AnotherFisher(Score):
            pass


def test_unknown_name_suggests_the_closest():
    with pytest.raises(KeyError, match="Did you mean 'fisher'"):
        create_score("fisher_")


def test_bad_options_are_reported():
    with pytest.raises(ValueError, match="EMA coefficient"):
        create_score("sensitivity", beta1=1.5)
    with pytest.raises(TypeError, match="bad options for score 'fisher'"):
        create_score("fisher", beta1=0.5)


def test_only_score_subclasses_register():
    with pytest.raises(TypeError, match="subclass of adalora_scores.Score"):
        register_score("not_a_score")(object)


@pytest.mark.parametrize("name", list_scores())
def test_state_round_trip(name):
    score = create_score(name)
    run(score, [(0.5, 0.1), (-0.2, 0.3), (0.7, -0.4)])
    clone = create_score(name)
    clone.bind(score.layout)
    clone.load_state_dict(score.state_dict())
    param = torch.full((score.layout.numel,), 0.3)
    torch.testing.assert_close(clone.element_scores(param), score.element_scores(param), rtol=0, atol=0)
    with pytest.raises(ValueError, match="belongs to"):
        other = create_score(next(n for n in list_scores() if n != name))
        other.bind(score.layout)
        other.load_state_dict(score.state_dict())


def test_user_defined_score_in_a_test_file(tmp_path):
    @register_score("test_abs_grad")
    class AbsGrad(Score):
        """s(w) = EMA of |g|."""

        statistics = ("mean_abs_grad",)

        def __init__(self, beta: float = 0.5) -> None:
            super().__init__()
            self.beta = beta

        def update(self, param, grad):
            ema_(self.mean_abs_grad, grad.abs(), self.beta)

        def element_scores(self, param):
            return self.mean_abs_grad

    try:
        assert "test_abs_grad" in list_scores()
        scores = run(create_score("test_abs_grad"), [(1, -2.0), (1, 4.0)])
        torch.testing.assert_close(scores, torch.full_like(scores, 2.5))  # 0.5·2 = 1 → 0.5 + 0.5·4 = 2.5
        from _tiny import batches, tiny_adalora, train

        model = tiny_adalora(total_step=20, tinit=2, tfinal=4, deltaT=2)
        allocator = adalora_scores.attach(model, score="test_abs_grad")
        train(model, batches(20))
        assert sum(allocator.ranks().values()) == 2 * len(allocator.layout.matrices)
    finally:
        if "test_abs_grad" in score_base.SCORES:
            score_base.SCORES.unregister("test_abs_grad")
