"""Compositions of the trainers: the built-in default (demo), the InstructGPT pipeline
(instructgpt), `hir warm-up` (warmup), `hir screen` (screen), a small model built and warmed up
here (small_start), HIR's premise measured (premise), a run's model exported (export)."""
