"""Tests: code."""
