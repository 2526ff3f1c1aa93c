"""What several methods share, once: the arithmetic evaluator, calculator annotations,
templates, instantiating a templated seed, value sampling, two-seed composition, sandbox
rounds, and self-agreement voting."""
