"""Two small services showing the authsvc client library; run `python -m examples.demo`."""
