"""KPDM's trusted consensus partitioning (TCP), in the kit's reading: noisy pairs judged per identity.

KPDM publishes no training code. Here each identity's pairs are judged against
the identity's own similarity distribution, so a pair is untrusted when it is
a low outlier among the pairs of its own person: :func:`identity_robust_z`
(median/MAD) and :func:`fit_identity_mixture` (a two-level mixture per
identity sharing the noise level across identities), combined over two views
by :func:`tcp_partition`. Taught in ``05_kpdm_trusted_consensus``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tireid_lite.errors import ConfigError
from tireid_lite.train.partition import (
    Partition,
    TcpMethod,
    _as_vector,
    _check_same_length,
    _check_uncertain_weight,
    _consensus,
)

MAD_TO_SD = 1.4826  # sd = 1.4826 * MAD for a Gaussian
MEAN_AD_TO_SD = 1.2533  # sd = sqrt(pi / 2) * mean absolute deviation for a Gaussian
_VAR_FLOOR = 1e-6  # variance floor of the similarity mixture (similarities live in [-1, 1])
_SPREAD_FLOOR = 0.25  # sigma >= this times the pooled within-identity MAD scale

# --------------------------------------------------------------------------- per-identity statistics


def _identity_groups(pids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(identities (G,), group (N,) index into identities, counts (G,))."""
    pid_array = np.asarray(pids)
    if pid_array.ndim != 1:
        raise ValueError(f"pids must be a 1-D array with one identity per pair, got shape {pid_array.shape}")
    identities, group = np.unique(pid_array, return_inverse=True)
    return identities, group.reshape(-1), np.bincount(group.reshape(-1), minlength=len(identities))


def _group_median(values: np.ndarray, group: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Median of ``values`` within each group: one sort, then the middle one or two per group. (G,)"""
    sorted_values = values[np.lexsort((values, group))]  # grouped, ascending within a group
    starts = np.cumsum(counts) - counts  # (G,)
    return (sorted_values[starts + (counts - 1) // 2] + sorted_values[starts + counts // 2]) / 2


def identity_robust_z(
    sims: Sequence[float] | np.ndarray,
    pids: Sequence[int] | np.ndarray,
    min_pairs: int = 3,
    eps: float = 1e-6,
) -> np.ndarray:
    r"""Each pair's robust z-score within its identity: how far below its person's typical pair it lies.

    For the pairs P_g of identity g, with s_i the similarity of pair i's own image
    and text::

        med_g = median_{i in P_g} s_i
        MAD_g = median_{i in P_g} |s_i - med_g|
        z_i   = (s_i - med_g) / (1.4826 * MAD_g + eps)

    1.4826 * MAD is the standard deviation of a Gaussian, so z reads like an
    ordinary z-score, but up to half of an identity's pairs can be outliers
    before med and MAD break down. When MAD_g = 0 (more than half the pairs share
    one value) the scale falls back to 1.2533 times the mean absolute deviation
    (also the sd of a Gaussian); when that is 0 too, every z of the identity is 0.
    Identities with fewer than ``min_pairs`` pairs get z = 0 (with two pairs the
    two z-scores are +-0.67 whatever the values, so nothing can stand out).
    Taught in ``05_kpdm_trusted_consensus``.
    """
    values = _as_vector("sims", sims)
    _, group, counts = _identity_groups(pids)
    _check_same_length("sims", values, "pids", group)
    if not len(values):
        return np.zeros(0)
    median = _group_median(values, group, counts)  # (G,)
    deviation = np.abs(values - median[group])  # (N,)
    scale = MAD_TO_SD * _group_median(deviation, group, counts)  # (G,)
    mean_scale = MEAN_AD_TO_SD * np.bincount(group, weights=deviation) / counts  # (G,)
    scale = np.where(scale > 0, scale, mean_scale)
    z = (values - median[group]) / (scale[group] + eps)  # (N,)
    z[counts[group] < min_pairs] = 0.0
    return z


@dataclass(frozen=True, eq=False)
class IdentityMixture:
    """The per-identity two-level mixture fitted by :func:`fit_identity_mixture`."""

    trusted_prob: np.ndarray  # (N,) posterior of the identity's own level; NaN for identities not fitted
    separated: np.ndarray  # (N,) bool: the mixture decides for this pair (its identity's levels are apart)
    identities: np.ndarray  # (G,) the distinct pids, sorted
    identity_level: np.ndarray  # (G,) mu_g, each identity's trusted similarity level; NaN if not fitted
    separation: np.ndarray  # (G,) D_g = (mu_g - nu) / sqrt((sigma^2 + tau^2) / 2); NaN if not fitted
    noise_level: float  # nu, the untrusted level shared by all identities
    noise_spread: float  # tau
    level_spread: float  # sigma, the spread of a pair around its identity's level
    fitted_globally: bool  # median D_g >= min_separation: the shared untrusted level is real
    iterations: int


def _two_means_lower(values: np.ndarray) -> np.ndarray:
    """The lower group of the best split of ``values`` into two groups (1-d k-means, exact)."""
    sorted_values = np.sort(values)
    n = len(sorted_values)
    cumulative = np.cumsum(sorted_values)[:-1]  # (n-1,) sums of the k lowest, k = 1..n-1
    k = np.arange(1, n)
    between = cumulative**2 / k + (sorted_values.sum() - cumulative) ** 2 / (n - k)
    return sorted_values[: int(np.argmax(between)) + 1]


def _log_normal(x: np.ndarray, mean, var) -> np.ndarray:
    return -0.5 * np.log(2 * np.pi * var) - 0.5 * (x - mean) ** 2 / var


def fit_identity_mixture(
    sims: Sequence[float] | np.ndarray,
    pids: Sequence[int] | np.ndarray,
    min_pairs: int = 4,
    min_separation: float = 3.0,
    max_iter: int = 200,
    tol: float = 1e-5,
) -> IdentityMixture:
    r"""A 2-component mixture per identity, whose lower (untrusted) component all identities share.

    Our reading of KPDM's "per-identity mixture". The similarities s_i of the
    pairs of identity g (only identities with at least ``min_pairs`` pairs take
    part) are modelled as::

        s_i ~ pi_g N(mu_g, sigma^2) + (1 - pi_g) N(nu, tau^2)

    mu_g is the identity's own trusted level and pi_g its share of trusted pairs;
    the untrusted component N(nu, tau^2) and the spread sigma are shared. Fitted
    by EM on all identities at once (group sums with ``np.bincount``), starting
    from mu_g = the identity's highest similarity, pi_g = 1/2, sigma = the pooled
    MAD scale, and nu, tau = mean and sd of the lower group of the best two-group
    split of all similarities; pi_g is smoothed, (n_trusted + 1/2) / (n_g + 1).
    The posterior of the identity's own component is ``trusted_prob``.

    Why share the lower component: a noisy pair carries a caption written for a
    random other person, so its similarity does not depend on whose image it
    is, while each identity's clean level does (some people are harder to
    describe). And a free mixture per identity cannot be trusted with the 4-10
    pairs an identity has in CUHK-PEDES, ICFG-PEDES or RSTPReid: fitted to 8
    pairs drawn from one Gaussian (scikit-learn, 300 draws) it still finds two
    components, with Ashman's D (below) between 3.2 and 5.1 for the middle half
    of the draws, while identities that mix clean and noisy pairs 5 sds apart
    give 5.5-9.4, and 3.6 or less for one in ten: no threshold separates them.
    Sharing nu, tau and sigma leaves one free level per identity; sigma is kept
    above a quarter of the pooled MAD scale so that a level cannot shrink onto a
    single pair.

    Separation rule (when the mixture decides): Ashman's D between the identity's
    level and the shared one, D_g = (mu_g - nu) / sqrt((sigma^2 + tau^2) / 2),
    must reach ``min_separation`` (default 3; a mixture of two equal-spread
    Gaussians is not even bimodal below D = 2). And the shared level must be real
    (``fitted_globally``): the median D_g over the fitted identities must reach
    ``min_separation`` too. Without noise EM still makes a lower component, out
    of the lower tail of the clean pairs, and that test rejects it. An identity
    whose pairs are all noisy has mu_g near nu, fails the rule and is left to
    the MAD test, which cannot see it either: no per-identity method can.
    Taught in ``05_kpdm_trusted_consensus``.
    """
    values = _as_vector("sims", sims)
    identities, group, counts = _identity_groups(pids)
    _check_same_length("sims", values, "pids", group)
    if max_iter < 1:
        raise ConfigError(f"max_iter={max_iter!r} must be at least 1; the default is 200 EM iterations")
    num_identities = len(identities)
    fitted_identity = counts >= min_pairs  # (G,)
    fitted = fitted_identity[group]  # (N,)
    trusted_prob = np.full(len(values), np.nan)
    level = np.full(num_identities, np.nan)
    separation = np.full(num_identities, np.nan)
    if fitted.sum() < 2 or np.ptp(values[fitted]) == 0:
        return IdentityMixture(
            trusted_prob, np.zeros(len(values), bool), identities, level, separation,
            float("nan"), float("nan"), float("nan"), False, 0,
        )

    x, g = values[fitted], group[fitted]  # (M,) pairs of fitted identities
    n = counts.astype(np.float64)  # (G,); identities not fitted keep zero sums below
    median = _group_median(values, group, counts)  # (G,)
    level = np.full(num_identities, -np.inf)
    np.maximum.at(level, g, x)  # start at the identity's highest similarity
    pooled_scale = MAD_TO_SD * np.median(np.abs(x - median[g]))  # within-identity spread, all identities
    spread_floor = max((_SPREAD_FLOOR * pooled_scale) ** 2, _VAR_FLOOR)
    spread2 = max(pooled_scale**2, spread_floor)
    lower = _two_means_lower(x)
    noise, noise2 = lower.mean(), max(lower.var(), _VAR_FLOOR)
    share = np.full(num_identities, 0.5)
    previous = -np.inf
    iterations = 0
    for iterations in range(1, max_iter + 1):
        # E-step: responsibility of the identity's own (trusted) component
        log_trusted = np.log(share)[g] + _log_normal(x, level[g], spread2)  # (M,)
        log_noise = np.log1p(-share)[g] + _log_normal(x, noise, noise2)  # (M,)
        log_mix = np.logaddexp(log_trusted, log_noise)  # (M,)
        resp = np.exp(log_trusted - log_mix)
        log_likelihood = log_mix.mean()
        if log_likelihood - previous < tol:
            break
        previous = log_likelihood
        # M-step: per-identity level and share, shared spread and untrusted level
        trusted_sum = np.bincount(g, weights=resp, minlength=num_identities)  # (G,)
        share = (trusted_sum + 0.5) / (n + 1.0)
        level_sum = np.bincount(g, weights=resp * x, minlength=num_identities)
        level = np.where(trusted_sum > 1e-12, level_sum / np.maximum(trusted_sum, 1e-12), level)
        spread2 = max(np.sum(resp * (x - level[g]) ** 2) / max(resp.sum(), 1e-12), spread_floor)
        untrusted = 1.0 - resp
        if untrusted.sum() > 1e-12:
            noise = np.sum(untrusted * x) / untrusted.sum()
            noise2 = max(np.sum(untrusted * (x - noise) ** 2) / untrusted.sum(), _VAR_FLOOR)

    level = np.where(fitted_identity, level, np.nan)
    separation = np.where(fitted_identity, (level - noise) / np.sqrt((spread2 + noise2) / 2), np.nan)
    fitted_globally = bool(np.median(separation[fitted_identity]) >= min_separation)
    separated_identity = fitted_identity & (separation >= min_separation) & fitted_globally  # (G,)
    trusted_prob[fitted] = resp
    return IdentityMixture(
        trusted_prob=trusted_prob,
        separated=separated_identity[group],
        identities=identities,
        identity_level=level,
        separation=separation,
        noise_level=float(noise),
        noise_spread=float(np.sqrt(noise2)),
        level_spread=float(np.sqrt(spread2)),
        fitted_globally=fitted_globally,
        iterations=iterations,
    )


# --------------------------------------------------------------------------- TCP (KPDM, our reading)


def _trusted_in_view(
    sims: np.ndarray,
    pids: np.ndarray,
    method: str,
    z_thresh: float,
    min_pairs: int,
    min_pairs_gmm: int,
    min_separation: float,
) -> np.ndarray:
    """One view's verdict: (N,) bool, True = trusted."""
    untrusted = identity_robust_z(sims, pids, min_pairs=min_pairs) < -z_thresh
    if method == "gmm":
        mixture = fit_identity_mixture(sims, pids, min_pairs=min_pairs_gmm, min_separation=min_separation)
        untrusted = np.where(mixture.separated, mixture.trusted_prob < 0.5, untrusted)
    return ~untrusted


def tcp_partition(
    sims_a: Sequence[float] | np.ndarray,
    sims_b: Sequence[float] | np.ndarray,
    pids: Sequence[int] | np.ndarray,
    method: TcpMethod = "gmm",
    z_thresh: float = 2.0,
    min_pairs: int = 3,
    min_pairs_gmm: int = 4,
    min_separation: float = 3.0,
    uncertain_weight: float = 0.5,
) -> Partition:
    r"""Trusted consensus partitioning (KPDM), in the kit's reading: low outliers of each identity.

    ``sims_a`` and ``sims_b`` (N,) hold, for every training pair, the cosine
    similarity of the pair's own image and text in the two views (global and
    token-selection embeddings); ``pids`` (N,) the pair's identity. In one view,
    pair i of identity g is untrusted when:

    * ``method="mad"``: it is a low outlier of its identity,
      z_i < -``z_thresh`` with z from :func:`identity_robust_z` (identities with
      fewer than ``min_pairs`` pairs: every pair trusted);
    * ``method="gmm"`` (default): where :func:`fit_identity_mixture` finds the
      identity's level and the shared untrusted level apart (Ashman's
      D >= ``min_separation``, identities with at least ``min_pairs_gmm`` pairs),
      the mixture decides: untrusted when the posterior of the identity's own
      level is below 1/2. Elsewhere the MAD rule decides.

    Consensus: trusted in both views -> clean (label 1, weight 1); untrusted in
    both -> noisy (0, weight 0); otherwise uncertain (-1, weight
    ``uncertain_weight``).

    The limitation of the MAD rule, measured on the kit's simulation (200
    identities x 8 pairs, clean similarities N(0.6, 0.1), noisy N(0.1, 0.1), the
    two views drawn independently): median and MAD describe the clean pairs only
    while they are a clear majority of the identity, and with 8 pairs two or
    three noisy ones already widen the MAD enough to hide them. Its F1 is about
    0.67 at 20% noise and 0.13 at 50%, where a typical identity is half noisy and
    its median falls between the two levels. The mixture, which locates the two
    levels instead of treating the lower one as outliers, reaches about 0.99 at
    both rates (0.88 at 80%, where whole identities are noisy). On noise-free
    data it finds no shared untrusted level and leaves every identity to the
    MAD rule (0.3% of the pairs flagged by both views). ``z_thresh=2.0``: 1.5
    finds more at 20% noise (F1 0.79) but flags about 8% of the pairs of a
    noise-free set in each view instead of 5%; above 2 recall drops quickly
    (F1 0.55 at 2.5). ``min_separation=3.0``: at 2 the noise-free set passes the
    global test (median D about 2.2) and 13% of its pairs are flagged; at 4 the F1 at
    50% noise falls to 0.97. Taught in ``05_kpdm_trusted_consensus``.
    """
    values_a = _as_vector("sims_a", sims_a)
    values_b = _as_vector("sims_b", sims_b)
    _check_same_length("sims_a", values_a, "sims_b", values_b)
    pid_array = np.asarray(pids)
    _check_same_length("sims_a", values_a, "pids", pid_array.reshape(-1))
    if method not in ("mad", "gmm"):
        raise ConfigError(f"method={method!r} is not supported; use 'mad' or 'gmm'")
    if not z_thresh > 0:
        raise ConfigError(
            f"z_thresh={z_thresh!r} must be positive: a pair is untrusted when z < -z_thresh; use e.g. 2.0"
        )
    uncertain_weight = _check_uncertain_weight(uncertain_weight)
    options = dict(
        method=method, z_thresh=z_thresh, min_pairs=min_pairs, min_pairs_gmm=min_pairs_gmm,
        min_separation=min_separation,
    )
    trusted_a = _trusted_in_view(values_a, pid_array, **options)
    trusted_b = _trusted_in_view(values_b, pid_array, **options)
    return _consensus(trusted_a, trusted_b, uncertain_weight)
