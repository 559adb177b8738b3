"""Helpers of the PostgreSQL tests."""
