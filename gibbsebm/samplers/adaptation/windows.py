"""Stan's warmup schedule: a fast initial buffer, doubling slow windows, a fast final buffer.

Step size adapts in every warmup iteration; the mass matrix is estimated in the slow windows
only, and re-estimated from scratch in each one. With Stan's defaults (``init_buffer=75``,
``base_window=25``, ``term_buffer=50``) and 1000 warmup iterations the slow windows are
``[75, 100), [100, 150), [150, 250), [250, 450), [450, 950)``: each window doubles and the last
one is stretched to end where the final buffer starts. When the three defaults do not fit in
``num_warmup`` they are rescaled to 15% / 75% / 10% of it, with a final buffer of at least
:data:`MIN_TERM_BUFFER` iterations (Stan's 10% left a 2-iteration final buffer at 25 warmup
iterations: dual averaging restarts after the last metric update and its averaged step size
after two iterations is about 10x the restart value, which froze every chain on a unit
Gaussian), and below 20 iterations there is no slow window (Stan Reference Manual, "Automatic parameter tuning"; the same schedule as
NumPyro's ``build_adaptation_schedule``).
"""

from __future__ import annotations

__all__ = ["build_schedule"]

#: Stan's defaults: adapt_init_buffer, adapt_window, adapt_term_buffer.
INIT_BUFFER = 75
BASE_WINDOW = 25
TERM_BUFFER = 50
#: Below this many warmup iterations Stan adapts no metric.
MIN_WARMUP_FOR_WINDOWS = 20
#: Fewest iterations of the final fast buffer when the defaults are rescaled: dual averaging
#: restarts after the last metric update and needs these to settle.
MIN_TERM_BUFFER = 10


def build_schedule(
    num_warmup: int,
    init_buffer: int = INIT_BUFFER,
    base_window: int = BASE_WINDOW,
    term_buffer: int = TERM_BUFFER,
) -> list[tuple[int, int]]:
    """Slow (metric) windows of a warmup of ``num_warmup`` iterations.

    Returns
    -------
    list of (start, stop)
        Half-open iteration ranges; the metric is updated at the end of each.

    Examples
    --------
    >>> build_schedule(1000)
    [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]
    >>> build_schedule(25)
    [(3, 15)]
    >>> build_schedule(10)
    []
    """
    if num_warmup < 0:
        raise ValueError(f"num_warmup must be >= 0, got {num_warmup}")
    if min(init_buffer, base_window, term_buffer) < 0 or base_window == 0:
        raise ValueError("window sizes must be >= 0 and base_window > 0")
    if num_warmup < MIN_WARMUP_FOR_WINDOWS:
        return []
    if init_buffer + base_window + term_buffer > num_warmup:
        init_buffer = int(0.15 * num_warmup)
        term_buffer = max(int(0.1 * num_warmup), MIN_TERM_BUFFER)
        base_window = num_warmup - init_buffer - term_buffer
    end = num_warmup - term_buffer
    windows = []
    start, size = init_buffer, base_window
    while start < end:
        # stretch this window to the final buffer when the next (doubled) one would not fit
        if 3 * size > end - start:
            size = end - start
        windows.append((start, start + size))
        start, size = start + size, 2 * size
    return windows
