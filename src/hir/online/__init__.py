"""The online phase: sample outputs (`sampling`), keep them (`buffer`), relabel them in hindsight
(`relabel`), evaluate greedily (`evaluate`), share the work between processes (`parallel`)."""
