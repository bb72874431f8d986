"""`python -m dllm_decode.evals.lm_eval_cli ARGS`: lm-eval's own CLI with the `dllm_decode` model registered.

lm-eval discovers models only through its registry, filled at import time, so this route imports the
adapter first and then hands every argument to `lm_eval` unchanged:

    HF_DATASETS_OFFLINE=1 python -m dllm_decode.evals.lm_eval_cli --model dllm_decode \
        --model_args pretrained=tiny-llada,sampler=threshold,threshold=0.9 \
        --tasks my_task --include_path tasks/ --batch_size 8
"""
from __future__ import annotations

import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    try:
        from lm_eval.__main__ import cli_evaluate
    except ImportError as err:
        raise SystemExit("the lm-eval adapter needs lm-evaluation-harness, an optional extra: "
                         "pip install 'dllm-decode[lmeval]'") from err
    from . import lm_eval_adapter  # noqa: F401  (registers the `dllm_decode` model)

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
