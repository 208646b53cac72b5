"""How the synthetic world moves: the ``_World`` state and its day-by-day steps.

Population (courses, horses and their names), weather and going, race plans and fields,
then each race day's steps in order: declare (weights, draws, gear, jockeys, racecard
comments), strength (the linear predictor ``eta`` and ``p_true``), market, run the races
(Plackett-Luce order, margins, times, in-running positions) and update the horses
(form, ratings, classes, retirements). The model is described in
``racecast.simulation.world``; the documents a day produces are built by
``racecast.simulation.documents``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from racecast.simulation.comments import _card_comments
from racecast.simulation.config import COURSE_TEMPLATES, SimulationConfig
from racecast.simulation.documents import _horse_id, _race_id, _racecard_doc, _results_doc
from racecast.simulation.population import (
    _CLASS_PAR,
    _CLASS_PRIZE,
    _DEBUT_EFFECT,
    _DISTANCE_WEIGHTS,
    _DISTANCES_M,
    _GEAR_ADD_P,
    _GEAR_CODES,
    _GEAR_FIRST_TIME,
    _GEAR_ONGOING,
    _GOING_TIME,
    _HEADGEAR_MASK,
    _INITIAL_RATING_SD,
    _LBS_PER_KG,
    _MAX_RATING_STEP,
    _MIN_WEIGHT_LBS,
    _NAME_FIRST,
    _NAME_SECOND,
    _NON_FINISH_OUTCOMES,
    _NON_FINISH_P,
    _RATING_MEAN,
    _RATING_SCALE,
    _SURFACE_TIME,
    _TOP_WEIGHT_LBS,
    _WEIGHT_PER_KG,
    ETA_COMPONENTS,
    SURFACES,
    _age_curve,
    _class_of_rating,
    _Course,
    _Day,
    _group_rank,
    _group_softmax,
    _Horses,
    _RacePlan,
    round_to_ladder,
)


class _World:
    """Mutable state of the simulation; one instance per :func:`racecast.simulation.world.simulate` call."""

    def __init__(self, cfg: SimulationConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.start = cfg.start_date.toordinal()
        rng = self.rng
        # People.
        self.jockey_ids = [f"J{i + 1:03d}" for i in range(cfg.jockeys)]
        self.fx = cfg.effects
        self.jockey_skill = rng.normal(0, self.fx.jockey_sd, cfg.jockeys)
        self.jockey_pop = 4.0 * self.jockey_skill + rng.normal(0, 0.4, cfg.jockeys)
        self.trainer_ids = [f"T{i + 1:03d}" for i in range(cfg.trainers)]
        self.trainer_skill = rng.normal(0, self.fx.trainer_sd, cfg.trainers)
        size = rng.gamma(1.5, 1.0, cfg.trainers)
        self.trainer_p = size / size.sum()
        # Courses.
        self.courses = [self._make_course(t) for t in COURSE_TEMPLATES[: cfg.courses]]
        self.moisture = rng.uniform(0.5, 3.0, len(self.courses))
        self.weather_day = self.start
        # Horses.
        self.names = rng.permutation(len(_NAME_FIRST) * len(_NAME_SECOND))
        self.horses = _Horses()
        # The handicapper's scale: rating = _RATING_MEAN + _RATING_SCALE * (strength - anchor),
        # anchor = mean ability of the first population + running mean of the other effects.
        self.ability_anchor = 0.0
        self.effects_sum, self.effects_n = 0.0, 0
        self._add_horses(cfg.horses, self.start, initial=True)

    # ------------------------------------------------------------------ setup
    def _make_course(self, template: tuple[str, str, str, str]) -> _Course:
        course_id, surface, country, tz = template
        rng = self.rng
        max_d = {"turf": 3219, "all-weather": 3219, "dirt": 2816}[surface]
        keep = _DISTANCES_M <= max_d
        p = _DISTANCE_WEIGHTS[keep] * rng.uniform(0.6, 1.4, keep.sum())
        return _Course(
            course_id=course_id,
            surface=SURFACES.index(surface),
            country=country,
            tz=ZoneInfo(tz),
            draw_bias=rng.normal(0, 0.25, 4) * np.array([1.0, 0.8, 0.5, 0.3]),
            pace_bias=float(rng.normal(0, self.fx.pace_bias_sd)),
            time_factor=float(1 + rng.normal(0, 0.01)),
            prize_factor=float(rng.uniform(0.8, 1.6)),
            distances=_DISTANCES_M[keep],
            distance_p=p / p.sum(),
            seasonal=surface == "turf",
        )

    def _add_horses(self, n: int, day: int, initial: bool) -> None:
        if n <= 0:
            return
        rng = self.rng
        date = dt.date.fromordinal(day)
        if initial:
            age = rng.choice(
                np.arange(2, 10), size=n, p=[0.18, 0.25, 0.20, 0.14, 0.10, 0.07, 0.04, 0.02]
            )
        else:
            age = np.where(rng.random(n) < (0.7 if date.month >= 5 else 0.2), 2, 3)
        foal_year = date.year - age
        foal_day = np.array([dt.date(int(y), 4, 1).toordinal() for y in foal_year])
        foal_day = foal_day + np.round(rng.normal(0, 25, n)).astype(int)
        ability = rng.normal(0, self.fx.ability_sd, n)
        peak = rng.uniform(4.0, 5.5, n)
        form = rng.normal(0, self.fx.form_sd, n)
        male = rng.random(n) < 0.55
        trainer = rng.choice(self.cfg.trainers, size=n, p=self.trainer_p)
        merit = (
            ability
            + _age_curve((day - foal_day) / 365.25, peak)
            + form
            + self.trainer_skill[trainer]
        )
        if initial:
            unraced = (age == 2) & (rng.random(n) < (0.9 if date.month < 7 else 0.4))
            runs = np.where(unraced, 0, 1 + rng.poisson(4.0 * (age - 1.5)))
            gap = np.where(rng.random(n) < 0.1, rng.integers(120, 300, n), rng.integers(10, 120, n))
            last_run = np.where(runs > 0, day - gap, -1)
            self.ability_anchor = float(merit.mean())
            rating = np.round(self._rating_scale(merit) + rng.normal(0, _INITIAL_RATING_SD, n))
            rating = np.where(runs > 0, np.clip(rating, 25, 130), np.nan)
            available = np.where(rng.random(n) < 0.05, day + rng.integers(30, 200, n), day)
        else:
            runs = np.zeros(n, dtype=int)
            last_run = np.full(n, -1)
            rating = np.full(n, np.nan)
            available = day + rng.integers(0, 45, n)
        # unraced horses: the connections place them by what they see at home
        home_view = self._rating_scale(merit + rng.normal(0, self.fx.connections_sd, n))
        class_level = _class_of_rating(np.where(np.isnan(rating), home_view, rating))
        opt = rng.choice(_DISTANCES_M, size=n, p=_DISTANCE_WEIGHTS) * np.exp(rng.normal(0, 0.1, n))
        start = self.horses.n
        names = [self._name(start + i) for i in range(n)]
        self.horses.append(
            {
                "foal_day": foal_day,
                "foal_year": foal_year,
                "male": male,
                "gelded": male & (rng.random(n) < 0.6),
                "trainer": trainer,
                "ability": ability,
                "peak": peak,
                "form": form,
                "form_day": np.full(n, day),
                "opt_log": np.log(opt),
                "going_pref": rng.uniform(0.5, 4.5, n),
                "surf0": rng.normal(0, self.fx.surface_sd, n),
                "surf1": rng.normal(0, self.fx.surface_sd, n),
                "surf2": rng.normal(0, self.fx.surface_sd, n),
                "style": rng.beta(2.0, 2.0, n),
                "bw_base": rng.normal(470, 28, n),
                "last_bw": np.full(n, np.nan),
                "rating": rating,
                "class_level": class_level,
                "runs": runs,
                "last_run": last_run,
                "last_dist": np.full(n, np.nan),
                "available_from": available,
                "retired": np.zeros(n, dtype=bool),
                "gear": np.zeros(n, dtype=np.int64),
                "gear_ever": np.zeros(n, dtype=np.int64),
                "bad_runs": np.zeros(n, dtype=int),
                "new_trainer": np.zeros(n, dtype=bool),
                "name": np.array(names, dtype=object),
            }
        )

    def _name(self, i: int) -> str:
        combo = int(self.names[i % len(self.names)])
        base = (
            f"{_NAME_FIRST[combo // len(_NAME_SECOND)]} {_NAME_SECOND[combo % len(_NAME_SECOND)]}"
        )
        generation = i // len(self.names)
        return (
            base
            if generation == 0
            else f"{base} {('II', 'III', 'IV', 'V')[min(generation, 4) - 1]}"
        )

    # ---------------------------------------------------------------- the day
    def _advance_weather(self, day: int) -> None:
        for d in range(self.weather_day + 1, day + 1):
            doy = dt.date.fromordinal(d).timetuple().tm_yday
            p_rain = 0.35 + 0.2 * math.cos(2 * math.pi * (doy - 15) / 365.25)
            rain = (self.rng.random(len(self.courses)) < p_rain) * self.rng.exponential(
                0.9, len(self.courses)
            )
            self.moisture = 0.8 * self.moisture + rain
        self.weather_day = max(self.weather_day, day)

    def _going(self, c: int) -> int:
        course = self.courses[c]
        m = self.moisture[c]
        if SURFACES[course.surface] == "all-weather":
            return int(self.rng.choice([1, 2, 3], p=[0.1, 0.8, 0.1]))
        if SURFACES[course.surface] == "dirt":
            return (1, 2, 4, 5)[int(np.searchsorted([1.0, 2.5, 4.0], m, side="right"))]
        return int(np.searchsorted([0.3, 1.0, 2.0, 3.0, 4.5], m, side="right"))

    def _candidates(self, day: int) -> np.ndarray:
        h = self.horses
        rested = (h.last_run < 0) | (day - h.last_run >= 3)
        return np.flatnonzero(~h.retired & (h.available_from <= day) & rested)

    def _plan(self, day: int) -> list[_RacePlan]:
        cfg, rng = self.cfg, self.rng
        date = dt.date.fromordinal(day)
        in_season = [
            i
            for i, c in enumerate(self.courses)
            if not c.seasonal or 3 <= date.month <= 11 or all(x.seasonal for x in self.courses)
        ]
        n_meet = min(
            int(rng.integers(cfg.meetings_per_day[0], cfg.meetings_per_day[1] + 1)), len(in_season)
        )
        chosen = sorted(rng.choice(in_season, size=n_meet, replace=False).tolist())
        counts = np.bincount(self.horses.class_level[self._candidates(day)], minlength=6)[1:] + 1.0
        class_p = 0.9 * counts / counts.sum() + 0.02
        plans = []
        for m, c in enumerate(chosen):
            course = self.courses[c]
            going = self._going(c)
            n_races = int(rng.integers(cfg.races_per_meeting[0], cfg.races_per_meeting[1] + 1))
            evening = m == 1 and 5 <= date.month <= 8
            first = dt.time(17, 45) if evening else dt.time(13, 30)
            start = dt.datetime.combine(date, first) + dt.timedelta(
                minutes=15 * int(rng.integers(0, 3)) + 20 * m
            )
            for k in range(n_races):
                race_class = int(rng.choice(5, p=class_p / class_p.sum())) + 1
                prize = _CLASS_PRIZE[race_class] * course.prize_factor * rng.uniform(0.9, 1.2)
                plans.append(
                    _RacePlan(
                        meeting=m,
                        course=course,
                        race_no=k + 1,
                        off_time=(start + dt.timedelta(minutes=30 * k)).replace(tzinfo=course.tz),
                        distance_m=int(rng.choice(course.distances, p=course.distance_p)),
                        race_class=race_class,
                        going=going,
                        prize=int(round(prize, -2)),
                        field_size=int(
                            rng.integers(cfg.runners_per_race[0], cfg.runners_per_race[1] + 1)
                        ),
                    )
                )
        return plans

    def _select_fields(self, day: int, plans: list[_RacePlan]) -> list[np.ndarray]:
        """Trainers enter horses: each race takes the best-suited available horses.

        Suitability (log weight): class match, distance vs the horse's optimum, surface
        preference, readiness to run (days since last run) and Gumbel noise; races pick
        their fields in random order, each horse running at most once a day.
        """
        h, rng = self.horses, self.rng
        cand = self._candidates(day)
        dsl = np.where(h.last_run[cand] < 0, 10_000, day - h.last_run[cand])
        ready = np.select([dsl < 7, dsl < 14, dsl <= 60], [-3.0, -1.2, 0.0], 0.3)
        class_w = np.log([1.0, 0.6, 0.15])
        taken = np.zeros(len(cand), dtype=bool)
        fields: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(plans)
        for r in rng.permutation(len(plans)):
            plan = plans[r]
            diff = np.minimum(np.abs(h.class_level[cand] - plan.race_class), 2)
            w = (
                ready
                + class_w[diff]
                - (math.log(plan.distance_m) - h.opt_log[cand]) ** 2 / (2 * 0.22**2)
                + 3.0 * h.surface_effect(cand, np.full(len(cand), plan.course.surface))
                + rng.gumbel(size=len(cand))
            )
            w[taken] = -np.inf
            k = min(plan.field_size, int((~taken).sum()))
            pick = np.argpartition(-w, k - 1)[:k]
            taken[pick] = True
            fields[r] = np.sort(cand[pick])
        return fields

    def _evolve_form(self, idx: np.ndarray, day: int) -> np.ndarray:
        h = self.horses
        rho = np.exp(-(day - h.form_day[idx]) / self.fx.form_days)
        h.form[idx] = rho * h.form[idx] + np.sqrt(1 - rho**2) * self.fx.form_sd * self.rng.normal(
            size=len(idx)
        )
        h.form_day[idx] = day
        return h.form[idx]

    # ------------------------------------------------------------ a race day
    def race_day(self, day: int, with_results: bool) -> tuple[dict, dict | None, dict[str, list]]:
        """Simulate one race day.

        Args:
            day: Proleptic Gregorian ordinal of the date.
            with_results: Run the races (results, state updates); else racecards only.

        Returns:
            The racecard document, the results document (``None`` without results) and
            the oracle rows of the day (see :func:`_oracle_rows`; empty without results).
        """
        self._advance_weather(day)
        self._add_horses(self.cfg.horses - int((~self.horses.retired).sum()), day, initial=False)
        plans = self._plan(day)
        d = _Day.create(day, plans, self._select_fields(day, plans))
        self._declare(d)
        self._strength(d)
        self._market(d)
        racecard = _racecard_doc(d, self.horses, self.jockey_ids, self.trainer_ids)
        if not with_results:
            return racecard, None, {}
        self._run_races(d)
        results = _results_doc(d)
        oracle = _oracle_rows(d)
        self._update_after_races(d)
        return racecard, results, oracle

    def _declare(self, d: _Day) -> None:
        """Card attributes: handicap weights, cloth numbers, draw, body weight, gear, jockeys."""
        h, rng, ri, hi = self.horses, self.rng, d.ri, d.hi
        d.age_years = (d.day - h.foal_day[hi]) / 365.25
        d.age = d.date.year - h.foal_year[hi]
        d.rating = h.rating[hi]
        rated = ~np.isnan(d.rating)
        n_rated = np.bincount(ri, weights=rated, minlength=d.n_races)
        rating_sum = np.bincount(ri, weights=np.nan_to_num(d.rating), minlength=d.n_races)
        mean_rated = np.where(
            n_rated > 0, rating_sum / np.maximum(n_rated, 1), _CLASS_PAR[d.race_class]
        )
        # unrated horses (debutants) are weighted as an average runner of the race
        d.rating_imputed = np.where(rated, d.rating, mean_rated[ri])
        top = np.full(d.n_races, -np.inf)
        np.maximum.at(top, ri, d.rating_imputed)
        w_lbs = np.clip(
            _TOP_WEIGHT_LBS - np.round(top[ri] - d.rating_imputed), _MIN_WEIGHT_LBS, _TOP_WEIGHT_LBS
        )
        d.weight_kg = np.round(w_lbs / _LBS_PER_KG, 1)
        d.cloth = _group_rank(ri, w_lbs * 1000 + d.rating_imputed, d.starts) + 1
        d.draw = _group_rank(ri, rng.random(d.n), d.starts) + 1
        young = 12.0 * np.clip(4 - d.age_years, 0, 2)
        d.body_weight = np.round(h.bw_base[hi] - young + rng.normal(0, 3.5, d.n), 1)

        # gear: trainers reach for head gear after poor runs; sometimes take it off
        gear = h.gear[hi].copy()
        u = rng.random(d.n)
        bit = np.left_shift(1, rng.choice(len(_GEAR_CODES), size=d.n, p=_GEAR_ADD_P))
        struggling = (h.bad_runs[hi] >= 2) & (gear == 0) & (u < 0.25)
        add = (h.runs[hi] >= 2) & (struggling | (u > 0.98))
        remove = ~add & (gear != 0) & (rng.random(d.n) < 0.04)
        with_item = np.where(bit & _HEADGEAR_MASK, (gear & ~_HEADGEAR_MASK) | bit, gear | bit)
        d.gear = np.where(remove, 0, np.where(add, with_item, gear))
        d.gear_first_time = d.gear & ~h.gear_ever[hi]
        h.gear[hi] = d.gear

        # jockeys: each rides at one meeting a day; better horses tend to get better riders
        d.jockey = np.empty(d.n, dtype=np.int64)
        pools = np.array_split(
            rng.permutation(self.cfg.jockeys), max(p.meeting for p in d.plans) + 1
        )
        for r, plan in enumerate(d.plans):
            pool, k = pools[plan.meeting], d.sizes[r]
            booked = pool[np.argsort(-(self.jockey_pop[pool] + rng.gumbel(size=len(pool))))[:k]]
            booked = booked[np.argsort(-(self.jockey_skill[booked] + rng.normal(0, 0.1, k)))]
            sl = slice(d.starts[r], d.starts[r] + k)
            d.jockey[sl.start + np.argsort(-(d.rating_imputed[sl] + rng.normal(0, 6, k)))] = booked

    def _strength(self, d: _Day) -> None:
        """The linear predictor ``eta`` of every declared runner (see the module docstring)."""
        h, rng, ri, hi = self.horses, self.rng, d.ri, d.hi
        fx = self.fx
        form = self._evolve_form(hi, d.day)
        age = _age_curve(d.age_years, h.peak[hi])
        trainer = self.trainer_skill[h.trainer[hi]]
        d.merit = h.ability[hi] + age + form + trainer
        d.debut = h.runs[hi] == 0
        d.days_since = np.where(d.debut, 0, d.day - h.last_run[hi])
        fitness = np.where(
            d.debut,
            _DEBUT_EFFECT,
            -0.035 * np.clip(10 - d.days_since, 0, None)
            - 0.15 * np.log(np.maximum(d.days_since, 45) / 45),
        )
        d.readiness = rng.normal(0, fx.readiness_sd, d.n)
        dist, going = d.distance[ri], d.going[ri]
        norm_draw = (d.draw - 1) / np.maximum(d.sizes[ri] - 1, 1)
        mean_weight = np.bincount(ri, weights=d.weight_kg, minlength=d.n_races) / d.sizes
        bits = np.arange(len(_GEAR_CODES))
        gear = ((d.gear_first_time[:, None] >> bits) & 1) @ _GEAR_FIRST_TIME
        gear = gear + ((d.gear[:, None] >> bits) & 1) @ _GEAR_ONGOING
        bw_change = np.nan_to_num(np.abs(d.body_weight - h.last_bw[hi]), nan=0.0)
        d.components = {
            "talent": h.ability[hi],
            "age": age,
            "form": form,
            "distance": -fx.distance_coef * (np.log(dist) - h.opt_log[hi]) ** 2,
            "going": -fx.going_coef * (going - h.going_pref[hi]) ** 2,
            "surface": h.surface_effect(hi, d.surface[ri]),
            "fitness": fitness,
            "readiness": d.readiness,
            "jockey": self.jockey_skill[d.jockey],
            "trainer": trainer,
            "draw": d.draw_bias[ri] * (norm_draw - 0.5),
            "pace": d.pace_bias[ri] * (0.5 - h.style[hi]),
            "weight": -_WEIGHT_PER_KG * (d.weight_kg - mean_weight[ri]),
            "gear": gear,
            "body_weight": -0.012 * np.maximum(bw_change - 5, 0),
            "noise": rng.normal(0, fx.noise_sd, d.n),
        }
        d.eta = np.sum([d.components[name] for name in ETA_COMPONENTS], axis=0)

    def _market(self, d: _Day) -> None:
        """Non-runners, void races, the true win probabilities and the betting market.

        Final prices: ``softmax(alpha * log p_true + noise)`` (``alpha < 1`` flattens the
        book: the favourite-longshot bias) scaled to the race's overround, then rounded to
        traditional price ticks. Morning prices add more noise and are made before the
        non-runners are known.
        """
        cfg, rng, ri, mk = self.cfg, self.rng, d.ri, self.cfg.market
        nr = rng.random(d.n) < cfg.non_runner_rate
        left = np.bincount(ri, weights=~nr, minlength=d.n_races)
        d.non_runner = nr & (left[ri] >= 2)
        d.run = ~d.non_runner
        d.n_start = np.bincount(ri, weights=d.run, minlength=d.n_races).astype(int)
        d.void = rng.random(d.n_races) < cfg.void_rate
        d.p_true = _group_softmax(ri, d.eta, d.run, d.n_races)
        declared = np.ones(d.n, dtype=bool)
        p_declared = _group_softmax(ri, d.eta, declared, d.n_races)
        z_final, z_morning = rng.normal(0, 1, d.n), rng.normal(0, 1, d.n)
        with np.errstate(divide="ignore"):  # log(0) for non-runners, masked below
            logit_final = mk.longshot_alpha * np.log(d.p_true) + mk.noise_sd * z_final
        logit_morning = (
            mk.longshot_alpha * np.log(p_declared)
            + mk.noise_sd * z_final
            + mk.morning_extra_noise_sd * z_morning
        )
        # bigger fields, bigger books; averages cfg.market.overround
        n_ref = sum(cfg.runners_per_race) / 2 * (1 - cfg.non_runner_rate)
        spread = 1 + mk.overround_sd / (mk.overround - 1) * rng.normal(0, 1, d.n_races)
        book = np.maximum(1 + (mk.overround - 1) * np.sqrt(d.n_start / n_ref) * spread, 1.01)
        q_final = _group_softmax(ri, logit_final, d.run, d.n_races) * book[ri]
        d.odds_final = np.where(d.run, round_to_ladder(1 / np.maximum(q_final, 1e-12)), np.nan)
        q_morning = _group_softmax(ri, logit_morning, declared, d.n_races) * mk.morning_overround
        d.odds_morning = round_to_ladder(1 / q_morning)
        last_dist = self.horses.last_dist[d.hi]
        dist = d.distance[ri]
        d.comment = _card_comments(
            rng,
            debut=d.debut,
            days_since=d.days_since,
            readiness_z=d.readiness / max(self.fx.readiness_sd, 1e-12),
            first_blinkers=(d.gear_first_time & 1) > 0,
            new_trainer=self.horses.new_trainer[d.hi],
            trip_up=dist > 1.25 * np.nan_to_num(last_dist, nan=np.inf),
            trip_down=dist < np.nan_to_num(last_dist, nan=0.0) / 1.25,
            soft_suits=(d.going[ri] >= 4) & (self.horses.going_pref[d.hi] >= 3.5),
        )

    def _run_races(self, d: _Day) -> None:
        """Run the races: Plackett-Luce order, margins, times and in-running positions."""
        cfg, rng, ri, starts = self.cfg, self.rng, d.ri, d.starts
        u = np.where(d.run, d.eta + rng.gumbel(size=d.n), -np.inf)
        rank_u = _group_rank(ri, u, starts)
        d.dead_heat = (rng.random(d.n_races) < cfg.dead_heat_rate) & (d.n_start >= 2)
        # non-finishers are never the winner (nor a dead-heater): p_true stays exact
        protected = rank_u <= np.where(d.dead_heat[ri], 1, 0)
        dnf = d.run & ~protected & (rng.random(d.n) < cfg.non_finisher_rate)
        d.dnf_kind = np.where(
            dnf, rng.choice(len(_NON_FINISH_OUTCOMES), size=d.n, p=_NON_FINISH_P), -1
        )
        d.finished = d.run & ~dnf
        d.u_finished = np.where(d.finished, u, -np.inf)
        d.finish_rank = _group_rank(ri, d.u_finished, starts)
        position = np.where(d.finished, d.finish_rank + 1, 0)
        d.position = np.where(d.finished & d.dead_heat[ri] & (d.finish_rank == 1), 1, position)

        # margins between consecutive finishers -> cumulative lengths behind the winner
        order = np.lexsort((-d.u_finished, ri))
        u_sorted, r_sorted = d.u_finished[order], ri[order]
        follows = np.zeros(d.n, dtype=bool)
        follows[1:] = (r_sorted[1:] == r_sorted[:-1]) & np.isfinite(u_sorted[1:])
        gap = np.zeros(d.n)
        behind = np.flatnonzero(follows)
        gap[behind] = u_sorted[behind - 1] - u_sorted[behind]
        lengths_per_unit = 1.5 * (d.distance / 1000) ** 0.85
        margin = np.where(follows, _round_margin(gap * lengths_per_unit[r_sorted]), 0.0)
        margin[follows & d.dead_heat[r_sorted] & (d.finish_rank[order] == 1)] = 0.0
        cum = np.cumsum(margin)
        d.lengths = np.empty(d.n)
        d.lengths[order] = np.round(cum - cum[starts[r_sorted]], 2)

        # the clock: base speed by distance, going and surface; a strong winner (absolute
        # strength above the handicapper's anchor; ~2 units for a typical winner) is faster
        u_win = np.full(d.n_races, -np.inf)
        np.maximum.at(u_win, ri, d.u_finished)
        d.winner_perf = np.where(np.isfinite(u_win), u_win - np.euler_gamma - self._anchor(), 2.0)
        speed = 17.3 - 0.95 * np.log2(d.distance / 1000)
        winner_time = (
            d.distance
            / speed
            * _GOING_TIME[d.going]
            * _SURFACE_TIME[d.surface]
            * d.time_factor
            * (1 - 0.004 * (d.winner_perf - 2.0))
            * (1 + rng.normal(0, 0.006, d.n_races))
        )
        sec_per_length = 0.17 * _GOING_TIME[d.going]
        d.finish_time = np.round(winner_time[ri] + d.lengths * sec_per_length[ri], 2)

        # in-running positions: each call mixes the run style with the final order
        d.n_calls = np.where(d.distance <= 1408, 2, 3)[ri]  # calls before the finish
        early = -4.0 * self.horses.style[d.hi] + rng.normal(0, 1.0, d.n)
        final = -4.0 * rank_u / np.maximum(d.n_start[ri], 1)
        d.incident_call = 1 + (rng.random(d.n) * d.n_calls).astype(int)
        d.calls = np.zeros((d.n, 3), dtype=np.int64)
        for k in range(1, 4):
            w = k / (d.n_calls + 1)
            score = (1 - w) * early + w * final + rng.normal(0, 0.5, d.n)
            active = d.run & ~(dnf & (d.incident_call < k))
            d.calls[:, k - 1] = _group_rank(ri, np.where(active, score, -np.inf), starts) + 1

    def _anchor(self) -> float:
        """Mean strength ``eta`` of a runner so far (the clock's reference)."""
        return self.ability_anchor + self.effects_sum / max(self.effects_n, 1)

    def _rating_scale(self, merit: np.ndarray) -> np.ndarray:
        """Merit on the official rating scale (unrounded)."""
        return _RATING_MEAN + _RATING_SCALE * (merit - self.ability_anchor)

    def _update_after_races(self, d: _Day) -> None:
        """The handicapper, class moves, injuries, retirements and trainer moves.

        The handicapper assesses every run (beaten margins and the clock, trouble in
        running, the weight carried, the trip and ground, collateral form) and so reads
        the horse's *merit* (talent, age, form and its yard) through the race's luck,
        with an error of ``effects.handicap_noise_sd``. A rated horse's mark moves
        ``effects.handicap_step`` of the way to the reading (at most 12 lbs a run); a
        horse's first mark is its first reading. A rated non-finisher drops 2 lbs.
        """
        h, rng, ri = self.horses, self.rng, d.ri
        ran = d.run & ~d.void[ri]
        self.effects_sum += float((d.eta - d.merit)[ran].sum())
        self.effects_n += int(ran.sum())
        finished = d.finished & ran
        reading = self._rating_scale(d.merit + rng.normal(0, self.fx.handicap_noise_sd, d.n))
        rated = ~np.isnan(d.rating)
        step = np.clip(
            self.fx.handicap_step * (reading - np.nan_to_num(d.rating)),
            -_MAX_RATING_STEP,
            _MAX_RATING_STEP,
        )
        rating = np.where(rated, np.where(finished, d.rating + step, d.rating - 2), reading)
        rating = np.clip(np.round(rating), 20, 130)
        # class: follows the rating; winners go up a class, three poor runs in a row drop one
        n_fin = np.bincount(ri, weights=finished, minlength=d.n_races)
        poor = ~finished | (d.finish_rank >= n_fin[ri] / 2)
        bad_runs = np.where(poor, h.bad_runs[d.hi] + 1, 0)
        won = finished & (d.position == 1)
        cls = _class_of_rating(rating)
        cls = np.where(won, np.minimum(cls, np.maximum(d.race_class[ri] - 1, 1)), cls)
        drop = bad_runs >= 3
        cls = np.where(drop, np.maximum(cls, np.minimum(d.race_class[ri] + 1, 5)), cls)

        idx, m = d.hi[ran], int(ran.sum())
        h.rating[idx] = rating[ran]
        h.class_level[idx] = cls[ran]
        h.bad_runs[idx] = np.where(drop, 0, bad_runs)[ran]
        h.runs[idx] += 1
        h.last_run[idx] = d.day
        h.last_dist[idx] = d.distance[ri][ran]
        h.last_bw[idx] = d.body_weight[ran]
        h.gear_ever[idx] |= d.gear[ran]
        injured = rng.random(m) < np.where(finished[ran], 0.04, 0.30)
        h.available_from[idx] = np.where(injured, d.day + rng.integers(45, 240, m), d.day)
        age = (d.day - h.foal_day[idx]) / 365.25
        p_retire = 0.006 + 0.012 * np.maximum(age - 6, 0) + 0.03 * (rating[ran] < 45)
        h.retired[idx] |= rng.random(m) < p_retire
        move = rng.random(m) < 0.01
        h.trainer[idx] = np.where(move, rng.integers(0, self.cfg.trainers, m), h.trainer[idx])
        h.new_trainer[idx] = move


def _oracle_rows(d: _Day) -> dict[str, Any]:
    """``race_id``, ``horse_id``, ``p_true``, ``eta`` and the components of ``eta`` of
    every runner (non-runners excluded); ids are lists, the numbers arrays."""
    race_ids = [_race_id(d.date, p) for p in d.plans]
    keep = np.flatnonzero(d.run)
    return {
        "race_id": [race_ids[r] for r in d.ri[keep].tolist()],
        "horse_id": [_horse_id(x) for x in d.hi[keep].tolist()],
        "p_true": d.p_true[keep],
        "eta": d.eta[keep],
        **{name: d.components[name][keep] for name in ETA_COMPONENTS},
    }


def _round_margin(lengths: np.ndarray) -> np.ndarray:
    """Round a raw margin to the judge's steps: short head, head, neck, quarters, halves, lengths."""
    x = np.clip(lengths, 0, 20)
    return np.select(
        [x < 0.075, x < 0.15, x < 0.375, x < 5, x < 10],
        [0.05, 0.1, 0.25, np.round(x * 4) / 4, np.round(x * 2) / 2],
        np.round(x),
    )
