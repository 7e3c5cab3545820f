"""Thin HTTP routes: parse a schema, call one service function, return a schema."""
