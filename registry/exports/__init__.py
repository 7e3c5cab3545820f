"""Exports of the registry into other tools' formats (LiteLLM Router configs)."""
