"""What a run writes and how it survives: the folders' file names and who may write where
(`folders`), checkpoints (`checkpoint`), atomic file writes (`fileio`), staged folder writes
(`staging`), one writer per folder (`lock`), logs and trackers (`tracking`), plots (`report`),
library versions (`versions`), and where the kill tests strike (`crash_points`)."""
