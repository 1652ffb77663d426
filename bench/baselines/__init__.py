"""What a careful engineer would build instead of leadstream, measured on the same dataset."""
