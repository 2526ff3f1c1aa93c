"""Generators: stages that make new records (seeds, InfinityMATH, MuggleMath, MathScale, RISE,
formalization) and the LLM client they share."""
