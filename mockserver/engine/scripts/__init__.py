"""Reply scripts: a small YAML language saying what the simulated upstream LLM produces."""

from mockserver.engine.scripts.loader import ScriptError, load_script_dir, load_scripts_text
from mockserver.engine.scripts.model import Script, ScriptSet

__all__ = ["Script", "ScriptError", "ScriptSet", "load_script_dir", "load_scripts_text"]
