"""Quiet-hours policies: named, dated tables of the hours a law allows messages in."""
