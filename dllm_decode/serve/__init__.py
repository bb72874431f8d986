"""`dllm-decode serve`: an OpenAI-compatible HTTP front door over `Sampler`, with step-level batching.

    pip install -e ".[serve]"
    dllm-decode serve --model tiny-llada --sampler threshold --port 8000

Modules, one job each: `schema` validates request bodies into a `Job`; `cohort` steps a batch of
requests through the loop's own step functions and fuses the forwards of compatible batches;
`scheduler` owns the model on one thread, admits requests at step boundaries and hands results back;
`stream` turns canvases into the final text deltas clients receive; `metrics` keeps the Prometheus
counters; `app` is the Starlette application and `run` starts uvicorn. Nothing here decodes on its
own: every reply equals `Sampler(...).generate` for that request alone (see docs/results/serve.md).
"""
