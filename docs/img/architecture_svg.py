"""Writes docs/img/architecture.svg: the layers (left) and the job lifecycle (right) in one picture.

Plain Python, no graphviz: run `python docs/img/architecture_svg.py` after changing the app order or the job states
(the app order is the one tests/test_import_graph.py enforces)."""

from __future__ import annotations

from html import escape
from pathlib import Path

W, H = 1290, 800
FONT = "font-family='Helvetica, Arial, sans-serif'"
out: list[str] = []


def box(x: float, y: float, w: float, h: float, title: str, sub: str = "", fill: str = "#eef3fb",
        stroke: str = "#4a6fa5", bold: bool = True) -> None:
    out.append(f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='8' fill='{fill}' stroke='{stroke}'/>")
    weight = "bold" if bold else "normal"
    ty = y + (h / 2 + 5 if not sub else h / 2 - 3)
    out.append(f"<text x='{x + w / 2}' y='{ty}' text-anchor='middle' font-size='14' font-weight='{weight}' "
               f"{FONT}>{escape(title)}</text>")
    if sub:
        out.append(f"<text x='{x + w / 2}' y='{y + h / 2 + 14}' text-anchor='middle' font-size='11' "
                   f"fill='#444' {FONT}>{escape(sub)}</text>")


def arrow(x1: float, y1: float, x2: float, y2: float, label: str = "", color: str = "#333",
          dashed: bool = False, lx: float | None = None, ly: float | None = None) -> None:
    dash = " stroke-dasharray='5,4'" if dashed else ""
    out.append(f"<line x1='{x1}' y1='{y1}' x2='{x2}' y2='{y2}' stroke='{color}' stroke-width='1.6'{dash} "
               f"marker-end='url(#arrow)'/>")
    if label:
        tx = lx if lx is not None else (x1 + x2) / 2 + 6
        ty = ly if ly is not None else (y1 + y2) / 2
        out.append(f"<text x='{tx}' y='{ty}' font-size='11' fill='#333' {FONT}>{escape(label)}</text>")


def text(x: float, y: float, s: str, size: int = 12, anchor: str = "start", weight: str = "normal",
         fill: str = "#222") -> None:
    out.append(f"<text x='{x}' y='{y}' text-anchor='{anchor}' font-size='{size}' font-weight='{weight}' "
               f"fill='{fill}' {FONT}>{escape(s)}</text>")


out.append(f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' viewBox='0 0 {W} {H}'>")
out.append("<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' markerHeight='7' "
           "orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='#333'/></marker></defs>")
out.append(f"<rect width='{W}' height='{H}' fill='white'/>")

# --- left: layers -------------------------------------------------------------------------------------------------
text(20, 32, "Layers: imports point down only (tests/test_import_graph.py)", 16, weight="bold")
box(20, 50, 250, 56, "Web: views, htmx partials", "webapp/<app>/views.py, templates", "#fdf1e3", "#c07a2c")
box(290, 50, 250, 56, "REST API", "webapp/api/views/<app>.py (DRF)", "#fdf1e3", "#c07a2c")
box(20, 116, 520, 46, "Jobs: workers/ (Celery tasks: parse a message, call one service)", "", "#fdf1e3",
    "#c07a2c", bold=False)
text(20, 186, "Apps, top to bottom (each imports only the apps below it):", 12, weight="bold")
apps = [
    ("exports", "datasets, writers, imports"), ("runs", "GRPO runs, checkpoints, evaluations"),
    ("rollout_browser", "rollouts + scores + labels, blind rule"),
    ("rubric_tools", "preview, AI drafts, dry run"), ("reviews", "queues, labels, agreement, blind rule"),
    ("judging", "judge jobs, scores, cache"), ("rollouts", "generation jobs, rollouts, the rollout filter"),
    ("endpoints", "model servers and engines"), ("rubrics", "rubrics, versions, editor"),
    ("tasks", "tasks, examples"),
]
y = 196
for name, sub in apps:
    box(40, y, 480, 34, f"{name}", sub, "#eef3fb", "#4a6fa5")
    y += 40
box(20, y + 4, 520, 44, "core", "projects, roles, permissions, jobs engine (job_enqueue, leases), registries",
    "#e8f5e9", "#3b8a4a")
box(20, y + 58, 520, 44, "training/ (no Django)", "rubric spec and engine, judges, generation, GRPO",
    "#f3e8fb", "#7a4aa5")
# inversions
text(20, 728, "Inversions where a lower app needs a higher one (no upward import):", 12, weight="bold", fill="#555")
for i, line in enumerate([
    "judging → reviews: the signal judge_job_scored (reviews warms its agreement dashboard)",
    "rollouts → judging, reviews: score and label clauses of the rollout filter, registered in AppConfig.ready",
    "judging → reviews: the blind-review guard of score pages, registered with core.visibility",
    "services → workers: core.jobs.job_enqueue(\"workers.x.y\", ...) by task name",
]):
    text(20, 746 + i * 15, line, 11, fill="#555")

# --- right: job lifecycle -----------------------------------------------------------------------------------------
text(620, 32, "Job lifecycle (core/jobs, every job kind)", 16, weight="bold")
box(840, 60, 200, 48, "pending", "created; enqueued after commit", "#fffbe6", "#b89b2c")
box(840, 170, 200, 60, "running", "chunks claimed with a lease", "#e6f0ff", "#4a6fa5")
box(610, 280, 190, 62, "chunk leased", "its worker renews the lease", "#f5f5f5", "#777", bold=False)
box(1085, 280, 195, 62, "lease expired", "worker died", "#fbeaea", "#b04a4a", bold=False)
arrow(940, 108, 940, 168, "a worker claims a chunk")
arrow(860, 230, 760, 278, "claim", lx=770, ly=255)
arrow(705, 342, 1180, 344, "", dashed=True)
text(880, 360, "no renewal within the lease", 11, anchor="middle")
arrow(1150, 280, 1040, 222, "re-enqueued", lx=1100, ly=240)
text(610, 388, "The lease is renewed every third of its length; a chunk's results and", 11, fill="#555")
text(610, 403, "its done flag commit only under a live lease, so it never runs twice.", 11, fill="#555")
text(610, 418, "Expired leases are swept at worker start and periodically.", 11, fill="#555")
finals = [
    ("succeeded", "every item done", "#e8f5e9", "#3b8a4a"),
    ("succeeded with", "N failed items", "#f1f8e0", "#7a9a2c"),
    ("failed", "all items failed / error", "#fbeaea", "#b04a4a"),
    ("cancelled", "by a user", "#f0f0f0", "#777"),
]
for i, (title, sub, fill, stroke) in enumerate(finals):
    bx = 615 + i * 168
    box(bx, 470, 158, 54, title, sub, fill, stroke)
    arrow(920 + i * 14, 230, bx + 79, 468, "", color=stroke)
text(940, 456, "", 11)
text(615, 548, "all chunks done → succeeded / succeeded with N failed / failed; cancel from pending or running.", 11,
     fill="#555")
text(615, 576, "Progress (done/total in the job's unit, rate, ETA, final duration) and cost (calls, tokens,", 11,
     fill="#555")
text(615, 591, "cache hits apart) are written as items finish; pages poll one job fragment (htmx).", 11, fill="#555")
out.append("</svg>")

Path(__file__).with_name("architecture.svg").write_text("\n".join(out) + "\n")
