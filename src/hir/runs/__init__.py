"""What a run writes and how it survives: checkpoints (`checkpoint`), atomic file writes
(`fileio`), logs and trackers (`tracking`), plots (`report`), a comparison's diagnostics
(`diagnostics`), library versions (`versions`), and where the kill tests strike (`crash_points`)."""
