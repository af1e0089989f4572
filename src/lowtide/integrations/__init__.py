"""Optional integrations: Prometheus (``lowtide[prometheus]``), Starlette and FastAPI
(``lowtide[fastapi]``) and OpenTelemetry (``lowtide[otel]``). Importing a module here without
its extra raises ImportError. What they export is read by :mod:`lowtide.integrations.readout`.
"""
