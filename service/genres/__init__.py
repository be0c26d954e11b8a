"""Genre classification for music tracks, driven by events."""
