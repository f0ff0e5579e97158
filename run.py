"""VLMEvalKit-style entry point, a shim over the packaged runner (``tg-llava-vlmeval`` is the same)."""
import sys

from tg_llava_eval.model_wrappers.vlmevalkit_run import main

if __name__ == "__main__":
    sys.exit(main())
