"""Bench: validate + render a big center (5,000 agents, 500 queues, 200 IVR menus).

The center is generated as YAML files in a temporary directory (so parsing and validation
are measured too): 10 tenants of 500 agents, 50 queues (half explicit tiers, half skills)
and 20 IVR menus each, with numbers, schedules with holidays, teams and skills.

    python bench/render.py [--tenants 10] [--repeat 3]

Prints the best of ``--repeat`` runs for validate (load_center) and render (render into a
temporary output directory), and the ratio of their sum to the 2 s target.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.definition.config import load_center
from daemon.definition.render import render

TARGET_S = 2.0
SKILLS = ("billing", "water", "gas", "sales", "english", "complaints", "meters", "debt")


def tenant_yaml(n: int, agents: int, queues: int, menus: int) -> dict[str, Any]:
    tid = f"t{n:02d}"
    base = 10000 + n * 1000
    agent_ids = [str(base + i) for i in range(agents)]
    agent_map = {}
    for i, aid in enumerate(agent_ids):
        skills = {SKILLS[(i + k) % len(SKILLS)]: 1 + (i * 7 + k * 3) % 10 for k in range(3)}
        agent_map[aid] = {
            "name": f"Agent {aid}", "password": f"pw{aid}", "team": f"team{i % 10}",
            "skills": skills, "wrap_up_s": 10 + i % 30, "ring_timeout_s": 15,
            "shifts": {"mon-fri": ["08:00-12:00", "13:00-18:00"]},
        }
    queue_map = {}
    for q in range(queues):
        body: dict[str, Any] = {
            "name": f"Queue {q} of {tid}",
            "strategy": ("longest-idle-agent", "ring-all", "top-down", "round-robin")[q % 4],
            "max_wait_s": 300, "tier_rules_apply": q % 2 == 0, "tier_rule_wait_second": 60,
            "announce_agent_id": q % 3 == 0, "survey": q % 2 == 1,
            "callback": {"enabled": q % 5 == 0, "after_s": 90, "exit_key": "*"},
            "on_timeout": {"voicemail": str(9000 + q)},
        }
        if q % 2 == 0:
            body["tiers"] = [{"agent": agent_ids[(q * 10 + k) % agents], "level": 1 + k // 5}
                             for k in range(10)]
        else:
            body["skills"] = {SKILLS[q % len(SKILLS)]: 1 + q % 5}
        queue_map[f"q{q}"] = body
    menu_map = {}
    for m in range(menus):
        options = {str(d): {"queue": f"q{(m * 3 + d) % queues}"} for d in range(1, 6)}
        options["9"] = {"ivr": f"m{(m + 1) % menus}"}
        options["0"] = {"playback": f"sounds/{tid}/info{m}.wav"}
        menu_map[f"m{m}"] = {
            "greet_long": f"sounds/{tid}/m{m}_long.wav", "greet_short": f"sounds/{tid}/m{m}.wav",
            "options": options, "on_failure": {"queue": f"q{m % queues}"},
        }
    numbers = {}
    for k in range(menus):
        numbers[str(4000000000 + n * 100000 + k)] = {"name": f"Line {k}", "rules": [
            {"name": "blocked", "callers": ["^1700000\\d{4}$"], "action": "hangup"},
            {"name": "open", "schedule": "business", "when": "open",
             "action": {"ivr": f"m{k % menus}"}},
            {"name": "closed", "action": {"voicemail": str(8000 + k)}},
        ]}
    return {tid: {
        "name": f"Tenant {n}", "domain": f"{tid}.bench.local", "timezone": "Asia/Shanghai",
        "numbers": numbers,
        "schedules": {"business": {
            "weekly": {"mon-fri": ["08:30-12:00", "13:00-17:30"], "sat": "09:00-12:00",
                       "sun": "closed"},
            "holidays": [{"name": "National Day", "from": "2026-10-01", "to": "2026-10-07"},
                         {"name": "New Year", "from": "2027-01-01", "to": "2027-01-03"}],
        }},
        "skills": {s: s.title() for s in SKILLS},
        "teams": {f"team{i}": {"name": f"Team {i}"} for i in range(10)},
        "ivr_menus": menu_map, "queues": queue_map, "agents": agent_map,
        "break_reasons": {"1": "lunch", "2": "training"},
        "dispositions": {"1": {"name": "resolved", "resolved": True}, "2": "callback"},
    }}


def write_center(path: Path, tenants: int, agents: int, queues: int, menus: int) -> None:
    for n in range(tenants):
        doc = {"tenants": tenant_yaml(n, agents // tenants, queues // tenants,
                                      menus // tenants)}
        (path / f"tenant{n:02d}.yaml").write_text(
            yaml.safe_dump(doc, sort_keys=True, allow_unicode=True), "utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=10)
    ap.add_argument("--agents", type=int, default=5000)
    ap.add_argument("--queues", type=int, default=500)
    ap.add_argument("--menus", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hotline-bench-") as tmp:
        cfg, out = Path(tmp) / "config", Path(tmp) / "out"
        cfg.mkdir()
        write_center(cfg, args.tenants, args.agents, args.queues, args.menus)
        size = sum(p.stat().st_size for p in cfg.iterdir())
        best_v = best_r = cpu_v = cpu_r = float("inf")
        files = 0
        center = None
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            center = load_center(cfg)  # pauses the garbage collector itself
            t1, c1 = time.perf_counter(), time.process_time()
            written = render(center, out)
            t2, c2 = time.perf_counter(), time.process_time()
            best_v, best_r = min(best_v, t1 - t0), min(best_r, t2 - t1)
            cpu_v, cpu_r = min(cpu_v, c1 - c0), min(cpu_r, c2 - c1)
            files = len(written)
        assert center is not None
        out_size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        n_agents = sum(len(t.agents) for t in center.tenants)
        n_queues = sum(len(t.queues) for t in center.tenants)
        n_menus = sum(len(t.ivr_menus) for t in center.tenants)
        total = best_v + best_r
        print(f"center: {len(center.tenants)} tenants, {n_agents} agents, {n_queues} queues, "
              f"{n_menus} IVR menus; YAML {size / 1e6:.1f} MB")
        # CPU time too: on a shared machine the wall clock also measures the neighbours
        print(f"validate (load_center): {best_v:.3f} s wall, {cpu_v:.3f} s CPU")
        print(f"render ({files} files, {out_size / 1e6:.1f} MB): {best_r:.3f} s wall, "
              f"{cpu_r:.3f} s CPU")
        print(f"validate + render: {total:.3f} s wall = {total / TARGET_S:.0%} of the "
              f"{TARGET_S:.0f} s target; {cpu_v + cpu_r:.3f} s CPU = "
              f"{(cpu_v + cpu_r) / TARGET_S:.0%} (best of {args.repeat}; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0 if total < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
