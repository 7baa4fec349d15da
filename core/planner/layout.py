"""Layout of the offline planner: time slots, box sizes and each entity's box over a scene's frames.

This module stands in for VideoDirectorGPT's layout step and Dysen-VDM's scene-graph dynamics
(step 4 of :mod:`core.planner.rules`): position words place an entity's first box, relations
("above", "next to", "between") place it against another, and motion words move, resize, show or hide
the box during its clause's time slot. Boxes are ``[x0, y0, x1, y1]`` in frame units (0-1, y down),
rounded to 4 decimals; a box of None means the entity is not in the frame.

A :class:`Track` holds an entity's waypoints (frame -> box or None); between waypoints the box moves
linearly (:meth:`Track.box_at`), and :meth:`SceneLayout.keyframes` samples all tracks at the frames
the plan needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.plan import Keyframe
from core.planner import lexicon as lx
from core.planner.parse import Clause, Position

Box = list[float]
"""``[x0, y0, x1, y1]`` in frame units 0-1, y pointing down."""

START_Y = 0.55  # the row where entities stand before any position word moves them
ROW_GAP = 0.08  # the gap between entities that one clause sets side by side (about one latent cell of model v2)
ROW_MARGIN = 0.02  # the least space a default row leaves between its end boxes and the frame's edges


def row_centres(widths: list[float], gap: float = ROW_GAP) -> list[float]:
    """x centres, in frame units (0-1), of boxes of ``widths`` standing in a row across the frame
    before any position word places them.

    Evenly spaced centres, ``(n + 1) / (N + 1)``, where that leaves at least ``gap`` between
    neighbours (one or two boxes of the default size); otherwise the row is centred with ``gap``
    between neighbours, or, where that does not fit within :data:`ROW_MARGIN` of the edges, with
    the widest equal gap that does (0 at worst: boxes touching, never overlapping). Three boxes of
    0.24 evenly spaced would be 0.01 apart, a pixel at 128x128, which a denoiser with 16-pixel
    latent cells draws as one shape.

    Args:
        widths: box widths in frame units, in (0, 1], one per entity, left to right.
        gap: the wanted space between neighbours, in frame units.

    Returns:
        one centre per width, increasing.
    """
    count = len(widths)
    even = [(n + 1) / (count + 1) for n in range(count)]
    if count < 2 or all(b - a - (wa + wb) / 2 >= gap - 1e-9 for a, b, wa, wb in zip(even, even[1:], widths, widths[1:])):
        return even
    room = 1.0 - 2 * ROW_MARGIN - sum(widths)
    gap = min(gap, max(0.0, room / (count - 1)))
    left = 0.5 - (sum(widths) + gap * (count - 1)) / 2
    centres = []
    for width in widths:
        centres.append(left + width / 2)
        left += width + gap
    return centres


def default_size(head: str, attributes: dict[str, str]) -> tuple[float, float]:
    """A box size (width, height) in frame units for a noun: people tall, vehicles wide, others square,
    scaled by a ``size`` attribute (1.35 for big/large/huge/giant, 0.7 for small/little/tiny)."""
    if head in lx.PERSON_NOUNS:
        w, h = 0.2, 0.45
    elif head in lx.VEHICLE_NOUNS:
        w, h = 0.36, 0.26
    else:
        w, h = 0.24, 0.24
    size = attributes.get("size")
    factor = 1.35 if size in ("big", "large", "huge", "giant") else 0.7 if size in ("small", "little", "tiny") else 1.0
    return (round(w * factor, 3), round(h * factor, 3))


@dataclass
class Timeline:
    """Clauses on a scene's frames: each clause gets a time slot; slots split frames 0..F-1 evenly.

    Sequential clauses take consecutive slots, a concurrent one shares the previous clause's slot,
    and one marked ``before_previous`` ("X after Y") swaps slots with the clause before it.
    """

    slots: list[int]  # one per clause
    num_slots: int
    num_frames: int

    @classmethod
    def of_clauses(cls, clauses: list[Clause], num_frames: int) -> Timeline:
        """The timeline of a scene's clauses (in written order) over ``num_frames`` frames."""
        slots: list[int] = []
        slot = -1
        for clause in clauses:
            if clause.concurrent and slot >= 0:
                slots.append(slot)
            else:
                slot += 1
                slots.append(slot)
        for i, clause in enumerate(clauses):
            if clause.before_previous and i > 0:
                slots[i], slots[i - 1] = slots[i - 1], slots[i]
        return cls(slots=slots, num_slots=max(slots) + 1 if slots else 1, num_frames=num_frames)

    def frames(self, slot: int) -> tuple[int, int]:
        """The first and last frame of a slot (a slot's last frame is the next slot's first)."""
        f = self.num_frames
        return round(slot * (f - 1) / self.num_slots), round((slot + 1) * (f - 1) / self.num_slots)


@dataclass
class Track:
    """An entity's box over a scene as (frame, box or None) waypoints.

    ``center`` and ``size`` are the box's current centre and size in frame units; steps that place or
    move the entity change them and write waypoints. ``placed`` is set once a position word or relation
    has placed it; ``goal_between`` is the x centre to reach ("rolls between them").
    """

    entity_id: str
    size: tuple[float, float]
    center: list[float]
    waypoints: dict[int, Box | None] = field(default_factory=dict)
    placed: bool = False
    goal_between: float | None = None

    def box(self, scale: float = 1.0) -> Box:
        """The box at the current centre, its size scaled, shifted to lie inside the frame."""
        w, h = self.size[0] * scale, self.size[1] * scale
        cx = min(max(self.center[0], w / 2), 1 - w / 2)
        cy = min(max(self.center[1], h / 2), 1 - h / 2)
        return [round(cx - w / 2, 4), round(cy - h / 2, 4), round(cx + w / 2, 4), round(cy + h / 2, 4)]

    def place(self, position: Position) -> None:
        """Move the centre to a position on the axes it names, and mark the track as placed."""
        x, y = position
        if x is not None:
            self.center[0] = x
        if y is not None:
            self.center[1] = y
        self.placed = True

    def never_hidden(self) -> bool:
        """Whether no waypoint hides the entity."""
        return not any(v is None for v in self.waypoints.values())

    def enter_at(self, frame: int) -> None:
        """Hide the entity before ``frame`` and show it from there (an entity a later clause introduces)."""
        self.waypoints.setdefault(frame, self.box())
        for earlier in [fr for fr in self.waypoints if fr < frame]:
            self.waypoints[earlier] = None
        self.waypoints[0] = None

    def box_at(self, frame: int) -> Box | None:
        """Piecewise-linear box of the track at a frame (None where absent; the current box without waypoints).

        Before the first waypoint the first box holds, after the last the last; next to a None
        waypoint the entity is absent except on a waypoint frame itself.
        """
        points = sorted(self.waypoints.items())
        if not points:
            return self.box()
        before = [(f, b) for f, b in points if f <= frame]
        after = [(f, b) for f, b in points if f >= frame]
        if not before:
            return after[0][1]
        if not after:
            return before[-1][1]
        (fa, ba), (fb, bb) = before[-1], after[0]
        if ba is None or bb is None:
            return ba if fa == frame else (bb if fb == frame else None)
        if fa == fb:
            return ba
        t = (frame - fa) / (fb - fa)
        return [round((1 - t) * a + t * b, 4) for a, b in zip(ba, bb)]


class SceneLayout:
    """The tracks of one scene's entities, keyed by entity id, in the order the scene introduces them.

    Args:
        sizes: (entity id, (width, height)) per entity; they start in a row, apart (:func:`row_centres`).
        num_frames: frames in the scene.
    """

    def __init__(self, sizes: list[tuple[str, tuple[float, float]]], num_frames: int):
        self.num_frames = num_frames
        centres = row_centres([size[0] for _, size in sizes])
        self.tracks: dict[str, Track] = {eid: Track(eid, size, [x, START_Y]) for x, (eid, size) in zip(centres, sizes)}

    def spread(self, entity_ids: list[str], frames: list[int]) -> None:
        """Lay out side by side the entities that one clause moves or places together and that share
        a box ("two red balls roll right" starts and ends both at the same place).

        Where the entities' boxes at ``frames[-1]`` (or their current boxes, without ``frames``)
        share centres within half a box, they are set apart by :data:`ROW_GAP`, across their motion
        (one above the other for a sideways motion, side by side otherwise), the group kept in the
        frame; their waypoints at ``frames`` and their centres move alike.
        """
        tracks = [self.tracks[e] for e in entity_ids]
        if len(tracks) < 2:
            return
        boxes = [t.waypoints.get(frames[-1]) if frames else t.box() for t in tracks]
        if any(b is None for b in boxes):
            return
        centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes]
        reach = min(min(b[2] - b[0], b[3] - b[1]) for b in boxes) / 2
        if max(abs(c[0] - centres[0][0]) + abs(c[1] - centres[0][1]) for c in centres) > reach:
            return
        first = tracks[0].waypoints.get(frames[0]) if frames else None
        dx, dy = (0.0, 0.0) if first is None else (boxes[0][0] - first[0], boxes[0][1] - first[1])
        axis = 1 if abs(dx) > abs(dy) else 0  # across the motion
        steps = [b[2 + axis] - b[axis] + ROW_GAP for b in boxes]
        offsets = [sum(steps[:i]) for i in range(len(tracks))]
        offsets = [o - (offsets[-1]) / 2 for o in offsets]
        current = [t.box() for t in tracks]
        for frame_boxes in [[t.waypoints.get(f) for t in tracks] for f in frames] + [current]:
            shown = [(b, o) for b, o in zip(frame_boxes, offsets) if b is not None]
            lo = min(b[axis] + o for b, o in shown) if shown else 0.0
            hi = max(b[2 + axis] + o for b, o in shown) if shown else 1.0
            shift = max(0.0, -lo) - max(0.0, hi - 1.0)  # keep the group in the frame
            for b, o in shown:
                b[axis] = round(b[axis] + o + shift, 4)
                b[2 + axis] = round(b[2 + axis] + o + shift, 4)
        for t, b in zip(tracks, current):
            t.center[axis] = (b[axis] + b[2 + axis]) / 2

    # Static placement -------------------------------------------------------------------------

    def relate(self, agents: list[str], relation: str, target_ids: list[str]) -> None:
        """Place the agents against the first target: above, below (with a 0.2 gap, moving the anchor
        toward the other edge), next to / beside it; "between" sets their ``goal_between`` instead
        (the middle of the first two targets, which move to x 0.28 and 0.72; 0.5 with one target)."""
        tracks = self.tracks
        anchors = [tracks[t] for t in target_ids]
        if relation == "between":
            if len(anchors) >= 2:
                a, b = anchors[0], anchors[1]
                a.center[0], b.center[0] = 0.28, 0.72
                goal_x = (a.center[0] + b.center[0]) / 2
            else:
                goal_x = 0.5
            for eid in agents:
                tracks[eid].goal_between = goal_x
            return
        anchor = anchors[0]
        for eid in agents:
            track = tracks[eid]
            if relation in ("above", "over"):
                anchor.center[1] = max(anchor.center[1], 0.72)
                track.center = [anchor.center[0], anchor.center[1] - anchor.size[1] / 2 - track.size[1] / 2 - 0.2]
            elif relation in ("below", "under", "beneath"):
                anchor.center[1] = min(anchor.center[1], 0.3)
                track.center = [anchor.center[0], anchor.center[1] + anchor.size[1] / 2 + track.size[1] / 2 + 0.2]
            elif relation in ("next to", "beside"):
                track.center = [min(anchor.center[0] + anchor.size[0] / 2 + track.size[0] / 2 + 0.04, 0.9), anchor.center[1]]
            track.placed = True

    # Motion -----------------------------------------------------------------------------------

    def move(self, entity_id: str, clause: Clause, start: int, end: int, *, agents: list[str], target_ids: list[str]) -> None:
        """Set an entity's waypoints for its clause's motion over frames [start, end].

        ``agents`` are the clause's subjects in this scene (for "toward each other") and ``target_ids``
        its other entities (for "toward X", "onto X"). The verb picks the motion: appear, disappear,
        grow/shrink, bounce, or travel (any other verb; a verb without a direction or goal stays put).
        """
        track = self.tracks[entity_id]
        verb = clause.verb or ""
        before = track.box()
        if start not in track.waypoints:
            track.waypoints[start] = before
        if verb in lx.APPEAR_VERBS:
            _appear(track, before, start, end)
        elif verb in lx.DISAPPEAR_VERBS:
            _disappear(track, before, start, end, self.num_frames)
        elif verb in lx.GROW_VERBS or verb in lx.SHRINK_VERBS:
            _resize(track, clause.place, start, end, grow=verb in lx.GROW_VERBS)
        elif verb in lx.BOUNCE_VERBS:
            _bounce(track, start, end)
        else:
            self._travel(track, clause, start, end, agents, target_ids)

    def _travel(self, track: Track, clause: Clause, start: int, end: int, agents: list[str], target_ids: list[str]) -> None:
        """Move the box in a straight line from its start (the source, or the side it comes from) to
        its goal over [start, end]."""
        default = lx.MOTION_VERBS.get(clause.verb or "")
        if default is None and not (clause.source or clause.goal or clause.toward or track.goal_between):
            track.waypoints[end] = track.box()
            return
        default = default or (1, 0)
        _set_start(track, clause, start, default)
        cy = track.center[1]
        if track.goal_between is not None:
            gx, gy = track.goal_between, cy
            if not clause.source:
                track.center = [0.1, cy]
                track.waypoints[start] = track.box()
        else:
            gx, gy = self._heading(track, clause, default, agents, target_ids)
        gx, gy = self._land_on_target(track, clause, (gx, gy), target_ids)
        track.center = [min(max(gx, 0.0), 1.0), min(max(gy, 0.0), 1.0)]
        track.waypoints[end] = track.box()

    def _heading(
        self, track: Track, clause: Clause, default: tuple[int, int], agents: list[str], target_ids: list[str]
    ) -> tuple[float, float]:
        """The goal centre: 30% of the way toward the other agents ("toward each other"), 60% toward a
        target, the named goal, or 0.6 (x) / 0.56 (y) of the frame along the direction."""
        cx, cy = track.center
        if clause.toward == "each other" and len(agents) > 1:
            others = [self.tracks[a].center for a in agents if self.tracks[a] is not track]
            mean_x = sum(o[0] for o in others) / len(others)
            return cx + (mean_x - cx) * 0.3, cy
        if clause.toward and target_ids:
            other = self.tracks[target_ids[0]].center
            return cx + (other[0] - cx) * 0.6, cy + (other[1] - cy) * 0.6
        goal = clause.goal
        if goal:
            return (goal[0] if goal[0] is not None else cx), (goal[1] if goal[1] is not None else cy)
        dx, dy = clause.direction or default
        source = clause.source
        if source and not clause.direction:
            # "rises from the bottom" / "falls from the top": go to the other side
            if source[1] is not None and dy != 0:
                dy = -1 if source[1] > 0.5 else 1
            if source[0] is not None and dx != 0:
                dx = -1 if source[0] > 0.5 else 1
        return (cx + dx * 0.6 if dx else cx), (cy + dy * 0.56 if dy else cy)

    def _land_on_target(self, track: Track, clause: Clause, goal: tuple[float, float], target_ids: list[str]) -> tuple[float, float]:
        """The goal moved on top of the first target for "onto X", and for a falling verb "above/over X"."""
        if not (clause.relation and target_ids):
            return goal
        relation = clause.relation[0]
        anchor = self.tracks[target_ids[0]]
        on_top = anchor.center[0], anchor.center[1] - anchor.size[1] / 2 - track.size[1] / 2
        if relation in ("onto",):
            goal = on_top
        if relation in ("above", "over") and clause.verb in lx.MOTION_VERBS and (lx.MOTION_VERBS[clause.verb][1] or 0) > 0:
            goal = on_top
        return goal

    # Sampling ---------------------------------------------------------------------------------

    def keyframes(self, frames: list[int]) -> list[Keyframe]:
        """One keyframe per frame (in the given order) with the box of every entity present there."""
        out = []
        for frame in frames:
            boxes = {}
            for eid, track in self.tracks.items():
                box = track.box_at(frame)
                if box is not None:
                    boxes[eid] = box
            out.append(Keyframe(frame=frame, boxes=boxes))
        return out


def _set_start(track: Track, clause: Clause, start: int, default: tuple[int, int]) -> None:
    """The start of a travel: the source ("from the left"), or for an unplaced entity the side opposite
    to where it heads (x 0.2/0.8, y 0.22/0.78)."""
    direction, source, goal = clause.direction, clause.source, clause.goal
    if source:
        track.place(source)
        track.waypoints[start] = track.box()
    elif not track.placed and (direction or goal or default):
        dx, dy = direction or default
        if goal:
            dx = 0 if goal[0] is None else (1 if goal[0] > 0.5 else -1)
            dy = 0 if goal[1] is None else (1 if goal[1] > 0.5 else -1)
        track.center = [0.2 if dx > 0 else 0.8 if dx < 0 else track.center[0], 0.22 if dy > 0 else 0.78 if dy < 0 else track.center[1]]
        track.waypoints[start] = track.box()


def _appear(track: Track, box: Box, start: int, end: int) -> None:
    """Hidden until a third into the slot (from the slot's start after the first slot), then shown."""
    at = start + max(1, (end - start) // 3) if start == 0 else start
    for frame in list(track.waypoints):
        if frame < at:
            track.waypoints[frame] = None
    track.waypoints[0] = None
    track.waypoints[max(at - 1, 0)] = None if at > 0 else box
    track.waypoints[at] = box
    track.waypoints[end] = box


def _disappear(track: Track, box: Box, start: int, end: int, num_frames: int) -> None:
    """Shown until half-way through the slot, then hidden to the scene's end."""
    at = start + max(1, (end - start) // 2)
    track.waypoints[at] = box
    track.waypoints[min(at + 1, num_frames - 1)] = None
    track.waypoints[num_frames - 1] = None


def _resize(track: Track, place: Position | None, start: int, end: int, *, grow: bool) -> None:
    """Grow from 0.55 to 1.6 times the size (or shrink the other way) over the slot, at the clause's place."""
    if place:
        track.place(place)
    small, large = 0.55, 1.6
    track.waypoints[start] = track.box(small if grow else large)
    track.waypoints[end] = track.box(large if grow else small)
    track.size = tuple(s * (large if grow else small) for s in track.size)


def _bounce(track: Track, start: int, end: int) -> None:
    """Up 0.3 of the frame (at most to the top edge) at the slot's middle, back down at its end."""
    mid = (start + end) // 2
    base = list(track.center)
    track.center = [base[0], max(base[1] - 0.3, track.size[1] / 2)]
    track.waypoints[mid] = track.box()
    track.center = base
    track.waypoints[end] = track.box()
