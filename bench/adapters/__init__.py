"""One adapter per library and backend; ``harness.plan`` lists them in run order."""
