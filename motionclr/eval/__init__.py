"""Evaluation protocols sharing one cached feature extractor."""
