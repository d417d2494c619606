"""Test helpers shared between test files: one place, never copied."""
