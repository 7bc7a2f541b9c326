"""`python -m stylealign.export.llama_server --config_file FILE`: llama-cpp-python's OpenAI server, with the
buffers that run on this CPU (llamacpp.plain_buffers_on_amx)."""

import runpy

from stylealign.export.llamacpp import plain_buffers_on_amx

if __name__ == "__main__":
    plain_buffers_on_amx()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
