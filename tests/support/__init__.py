"""Helpers the test modules share: servers and workers, feeds and their oracles, producers,
checkers. Test modules import from here, never from each other or from conftest."""
