"""Tests: flow."""
