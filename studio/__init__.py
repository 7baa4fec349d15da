"""The Director Studio web app (Gradio). It only wires events to ``core``; see studio/app.py."""
