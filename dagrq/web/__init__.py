"""``dagrq ui``: the web view, an edge beside the command line (Starlette + uvicorn)."""
