"""Optional integrations: Prometheus (``lowtide[prometheus]``) and Starlette/FastAPI
(``lowtide[fastapi]``). Importing a module here without its extra raises ImportError."""
