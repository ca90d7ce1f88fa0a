"""The third seed's March Madness simulation, which killed its Gunicorn
workers by forking inside the web server: each matchup simulated
possession by possession, many times, through ``with Pool(processes=8)
as p: results = p.map(run_simulation, simulations)``. On shmkit only the
import changed: helpers are started fresh, never forked, so the same
line is safe inside a server (see ``fastapi_app.py``).
"""

import random
import statistics

from shmkit import Pool

TEAMS = {  # points per shot, shooting %, turnover %, offensive-rebound %
    "Gonzaga": (2.15, 0.55, 0.14, 0.30),
    "Baylor": (2.10, 0.53, 0.15, 0.33),
    "Illinois": (2.05, 0.52, 0.16, 0.32),
    "Michigan": (2.05, 0.51, 0.15, 0.29),
}


def possession(rng: random.Random, team: str) -> int:
    """One possession: a turnover, or shots until a make or a defensive rebound."""
    points, shooting, turnovers, rebounds = TEAMS[team]
    if rng.random() < turnovers:
        return 0
    while True:
        if rng.random() < shooting:
            return 3 if rng.random() < points - 2 else 2
        if rng.random() >= rebounds:
            return 0


def run_simulation(matchup: tuple[str, str, int]) -> dict:
    """``seed``'s game of ``home`` against ``away``: 70 possessions each,
    overtime until someone leads."""
    home, away, seed = matchup
    rng = random.Random(seed)
    score = {home: 0, away: 0}
    possessions = 70
    while True:
        for _ in range(possessions):
            for team in (home, away):
                score[team] += possession(rng, team)
        if score[home] != score[away]:
            return {"winner": max(score, key=score.get), "margin": abs(score[home] - score[away])}
        possessions = 7  # overtime


def main(games: int = 2000) -> None:
    simulations = [("Gonzaga", "Baylor", seed) for seed in range(games)]
    with Pool(processes=8) as p:
        results = p.map(run_simulation, simulations)
    wins = sum(r["winner"] == "Gonzaga" for r in results)
    print(f"Gonzaga beats Baylor in {wins / games:.1%} of {games} games, median margin {statistics.median(r['margin'] for r in results)}")


if __name__ == "__main__":
    main()
