"""Tests of the pricing engine."""
