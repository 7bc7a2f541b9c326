"""The Gradio arena app: layout and callbacks only; the logic lives in stylealign.arena."""
