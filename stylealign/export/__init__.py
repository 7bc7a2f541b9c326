"""Take an adapter out: merged weights, GGUF base + LoRA GGUF, an Ollama Modelfile, and a check that the
exported model still answers like the adapter (`stylealign export`, `stylealign serve`)."""
