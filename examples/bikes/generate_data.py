"""Write data/hourly.csv: two years of synthetic hourly bike-rental counts with weather.

Runs on the host with the standard library only. The output is the same bytes on every run and every
machine (fixed seed, fixed start date, fixed float formatting), so the committed CSV can be regenerated
and checked with `git diff --exit-code`.

What is in the signal, so that the example has something to learn:
- daily shape: commute peaks at 08:00 and 17:00-18:00 on working days, a midday hump on weekends/holidays;
- weekly shape: Friday evenings busier, Sundays quieter;
- an annual temperature cycle, with rentals rising with warmth and falling again in the heat;
- rain spells that suppress rentals;
- a persistent demand anomaly (events, tourism, road works) that only lag features can see;
- noise.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

SEED = 20240101
START = datetime(2023, 1, 1, tzinfo=UTC)
DAYS = 730
OUT = Path(__file__).resolve().parent / "data" / "hourly.csv"

# Fixed-date public holidays plus the Easter-dependent ones, written out: no holiday library on the host.
HOLIDAYS = {
    date(2023, 1, 1), date(2023, 4, 7), date(2023, 4, 10), date(2023, 5, 1), date(2023, 5, 18),
    date(2023, 5, 29), date(2023, 10, 3), date(2023, 12, 25), date(2023, 12, 26),
    date(2024, 1, 1), date(2024, 3, 29), date(2024, 4, 1), date(2024, 5, 1), date(2024, 5, 9),
    date(2024, 5, 20), date(2024, 10, 3), date(2024, 12, 25), date(2024, 12, 26),
}  # fmt: skip


def gaussian_bump(x: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((x - centre) / width) ** 2)


def daily_profile(hour: int, working_day: bool) -> float:
    """Relative demand by hour of day; about 1.0 at a typical busy hour."""
    night = 0.04 + 0.06 * gaussian_bump(hour, 13, 5)
    if working_day:
        return (
            night
            + 1.2 * gaussian_bump(hour, 8, 1.0)
            + 1.0 * gaussian_bump(hour, 17.5, 1.4)
            + 0.25 * gaussian_bump(hour, 12.5, 1.5)
        )
    return night + 0.75 * gaussian_bump(hour, 14, 3.0)


def weekday_factor(weekday: int, hour: int) -> float:
    if weekday == 4 and hour >= 16:  # Friday evening
        return 1.15
    if weekday == 6:  # Sunday
        return 0.85
    return 1.0


def temperature_effect(temp_c: float) -> float:
    """Riders like 20-25 C; cold and heat both keep them home."""
    return 0.25 + 0.85 * gaussian_bump(temp_c, 23, 9)


def main() -> None:
    rng = random.Random(SEED)
    OUT.parent.mkdir(parents=True, exist_ok=True)

    weather_anomaly = 0.0  # persistent deviation from the seasonal temperature, degrees C
    demand_anomaly = 0.0  # persistent log-demand deviation
    raining = False
    lines = ["timestamp,temperature_c,precipitation_mm,is_holiday,count"]
    for i in range(DAYS * 24):
        ts = START + timedelta(hours=i)
        day_of_year = ts.timetuple().tm_yday
        hour = ts.hour

        seasonal = 10.5 + 9.5 * math.sin(2 * math.pi * (day_of_year - 110) / 365.25)
        diurnal = 3.5 * math.sin(2 * math.pi * (hour - 9) / 24)
        weather_anomaly = 0.97 * weather_anomaly + rng.gauss(0.0, 0.55)
        temp_c = seasonal + diurnal + weather_anomaly

        # Rain comes in spells: a two-state Markov chain, wetter in winter.
        wet_season = 0.5 + 0.5 * math.cos(2 * math.pi * (day_of_year - 15) / 365.25)
        raining = rng.random() > 0.18 if raining else rng.random() < 0.012 + 0.012 * wet_season
        precip_mm = round(rng.expovariate(1 / 1.4), 1) if raining else 0.0

        holiday = ts.date() in HOLIDAYS
        working_day = ts.weekday() < 5 and not holiday
        demand_anomaly = 0.9 * demand_anomaly + rng.gauss(0.0, 0.08)
        growth = 1.0 + 0.08 * i / (DAYS * 24)

        mean = (
            420.0
            * growth
            * daily_profile(hour, working_day)
            * weekday_factor(ts.weekday(), hour)
            * temperature_effect(temp_c)
            * math.exp(-0.45 * precip_mm)
            * math.exp(demand_anomaly)
        )
        # Poisson-like noise (normal approximation is fine at these means), never negative.
        count = max(0, round(mean + math.sqrt(mean + 1.0) * rng.gauss(0.0, 1.0)))

        # "+ 0.0" turns a rounded -0.0 into 0.0, which reads better and parses the same.
        temp_out = round(temp_c, 1) + 0.0
        lines.append(f"{ts.strftime('%Y-%m-%dT%H:%M:%SZ')},{temp_out:.1f},{precip_mm:.1f},{int(holiday)},{count}")

    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
    print(f"wrote {OUT} ({len(lines) - 1} rows, {OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
