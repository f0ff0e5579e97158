"""Adapters that drop TG-LLaVA into VLMEvalKit and lmms-eval (import nothing heavy here)."""
