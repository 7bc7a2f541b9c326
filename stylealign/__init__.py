"""stylealign: turn a written persona into a style adapter for an open LLM, and measure what it changed."""

__version__ = "0.1.0"
