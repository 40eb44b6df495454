"""liaotian's performance suite: `python -m bench` (or `scripts/bench`); see docs/performance.md."""
