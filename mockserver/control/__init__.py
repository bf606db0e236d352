"""The mock's own control API under /__mock__/: reset, request journal, deployment switches."""
