"""Seeded fault injection and service counters for tests and benchmarks.

Faults are drawn per API request from one seeded RNG. Every fault happens *before* the request
has any effect, so a client that retries (the SDK does, for all of these) sees each request
applied exactly once.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, get_args

FaultKind = Literal["503", "429", "drop", "slow"]
ALL_KINDS: tuple[str, ...] = get_args(FaultKind)

# Routes the SDK does not retry on a fault (or where a fault only produces log noise).
UNFAULTED_ROUTES = frozenset(
    {"healthz", "telemetry", "session_heartbeat", "dynamic_config", "download", "cancel_future"}
)
# Routes whose answer is a future: a "slow" fault delays that future's completion.
FUTURE_ROUTES = frozenset(
    {
        "create_model",
        "forward_backward",
        "optim_step",
        "save_weights",
        "save_weights_for_sampler",
        "save_weights_external",
        "load_weights",
        "asample",
    }
)


@dataclass
class FaultConfig:
    """What to inject. Off by default; assign a new one to `LocalTinker.faults` at any time.

    Example:
        >>> FaultConfig(rate=0.1, seed=7, latency_s=0.05).kinds
        ('503', '429', 'drop', 'slow')
    """

    rate: float = 0.0
    seed: int = 0
    latency_s: float = 0.0
    kinds: tuple[str, ...] = ALL_KINDS
    cut_downloads: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"FaultConfig.rate={self.rate!r} must be between 0 and 1.")
        if self.latency_s < 0:
            raise ValueError(f"FaultConfig.latency_s={self.latency_s!r} must be >= 0.")
        unknown = [k for k in self.kinds if k not in ALL_KINDS]
        if unknown or not self.kinds:
            raise ValueError(
                f"FaultConfig.kinds={self.kinds!r}: use a non-empty subset of {ALL_KINDS}."
            )


@dataclass
class ServiceStats:
    """Counters a test or benchmark reads after a run."""

    optim_steps: Counter[str] = field(default_factory=Counter)
    bytes_served: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    downloads_cut: int = 0
    compute_s: Counter[str] = field(default_factory=Counter)  # worker seconds per request type
    reordered: int = 0  # requests that arrived before an earlier seq_id and waited for it


class FaultInjector:
    """Draws faults from a seeded RNG; re-seeds whenever the config object changes."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config or FaultConfig()
        self._rng = random.Random(self._config.seed)
        self._cut_paths: set[str] = set()

    @property
    def config(self) -> FaultConfig:
        return self._config

    @config.setter
    def config(self, value: FaultConfig | None) -> None:
        with self._lock:
            self._config = value or FaultConfig()
            self._rng = random.Random(self._config.seed)
            self._cut_paths = set()

    def draw(self, route: str) -> str | None:
        """The fault to inject into one request of `route`, or None."""
        cfg = self._config
        if cfg.rate <= 0 or route in UNFAULTED_ROUTES:
            return None
        with self._lock:
            if self._rng.random() >= cfg.rate:
                return None
            kinds = [k for k in cfg.kinds if k != "slow" or route in FUTURE_ROUTES]
            if not kinds:
                return None
            return self._rng.choice(kinds)

    def slow_delay(self) -> float:
        """Extra seconds a 'slow' fault adds to one future."""
        with self._lock:
            return self._rng.uniform(0.2, 1.0)

    def should_cut(self, key: str) -> bool:
        """True once per file: cut this download about half-way."""
        if not self._config.cut_downloads:
            return False
        with self._lock:
            if key in self._cut_paths:
                return False
            self._cut_paths.add(key)
            return True
