"""A Monte Carlo estimate of pi, stamped with the time it was made.

With the default params the result changes on every run (unseeded randomness, wall-clock timestamp); with
`-c fixed` it is seeded and stamped with SOURCE_DATE_EPOCH, so a rebuild gives the same bytes.
"""

from __future__ import annotations

import json
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path

params = json.loads(Path(os.environ.get("HARNESS_PARAMS", "/harness/params.json")).read_text())
outputs = Path(os.environ.get("HARNESS_OUTPUTS", "/outputs"))

rng = random.Random(params["seed"]) if params["seed"] is not False else random.Random()
inside = 0
points = []
for _ in range(int(params["samples"])):
    x, y = rng.random(), rng.random()
    inside += x * x + y * y <= 1.0
    points.append(f"{x:.6f},{y:.6f}")
estimate = 4 * inside / len(points)

# The fix for a timestamp: the commit's time (SOURCE_DATE_EPOCH) instead of the wall clock.
stamp = int(os.environ["SOURCE_DATE_EPOCH"]) if params["clock"] == "commit" else time.time()
made_at = datetime.fromtimestamp(stamp, UTC).isoformat()

(outputs / "estimate.txt").write_text(f"pi is about {estimate}\nmade at {made_at}\n")
(outputs / "points.csv").write_text("x,y\n" + "\n".join(points) + "\n")
(outputs / "metrics.json").write_text(json.dumps({"pi_estimate": estimate, "error": abs(estimate - 3.141592653589793)}))
print(f"pi is about {estimate} ({len(points)} samples, made at {made_at})")
