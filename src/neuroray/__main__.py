from neuroray.cli import entrypoint

entrypoint()
