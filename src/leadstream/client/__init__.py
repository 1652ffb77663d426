"""What runs on the other side of leadstream's topics: publishing input files (a source
system's part) and reading a send's list (a dispatcher's part). The CLI uses both."""

__all__: list[str] = []
