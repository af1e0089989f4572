"""lowtide's benchmarks: each module prints a table and writes JSON under benchmarks/out/
(untracked); with ``--write``, under benchmarks/results/ (the recorded results)."""
