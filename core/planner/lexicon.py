"""Word lists of the rule-based planner: colours, toy kinds, backgrounds, motion and spatial words."""

from __future__ import annotations

COLOR_WORDS = {
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "white",
    "black", "brown", "gray", "grey", "gold", "golden", "silver", "violet", "cyan", "magenta",
}

# Noun (lemma) -> toy-world kind. Nouns not listed keep their own word as kind.
KIND_SYNONYMS = {
    "ball": "ball", "circle": "ball", "sphere": "ball", "orb": "ball", "dot": "ball",
    "square": "square", "box": "square", "cube": "square", "block": "square", "rectangle": "square",
    "triangle": "triangle", "pyramid": "triangle",
    "star": "star",
    "heart": "heart",
    "ring": "ring", "donut": "ring", "doughnut": "ring", "hoop": "ring",
    "diamond": "diamond", "rhombus": "diamond", "gem": "diamond",
    "cross": "cross", "plus": "cross",
}

# Head noun (lemma) -> background name. Toy backgrounds map to the toy world's names; other places
# are kept as written ("kitchen", "dining room").
TOY_BACKGROUNDS = {
    "grass": "grass", "lawn": "grass", "meadow": "grass", "field": "grass", "park": "grass",
    "sky": "sky", "air": "sky", "cloud": "sky",
    "desert": "desert", "sand": "desert", "dune": "desert",
    "night": "night", "space": "night",
    "ocean": "ocean", "sea": "ocean", "water": "ocean", "lake": "ocean",
    "snow": "snow", "ice": "snow", "winter": "snow",
}
PLACE_NOUNS = {
    "kitchen", "office", "room", "road", "street", "city", "beach", "forest", "countryside", "garden",
    "house", "home", "stage", "river", "mountain", "restaurant", "cafe", "classroom", "bedroom",
    "studio", "hall", "park", "yard", "town", "village", "market", "station", "airport", "gym",
    "library", "shop", "store", "hospital", "school", "bathroom", "living", "lab", "laboratory",
    "background", "scene", "landscape", "alley", "bridge", "highway", "sidewalk", "track",
}

SPATIAL_NOUNS = {"left", "right", "top", "bottom", "center", "centre", "middle", "side", "corner", "edge", "front", "back"}

# Position words -> (x, y) centre, None where the axis is not constrained.
POSITION_WORDS = {
    "left": (0.2, None), "right": (0.8, None), "top": (None, 0.22), "bottom": (None, 0.78),
    "center": (0.5, 0.5), "centre": (0.5, 0.5), "middle": (0.5, 0.5),
    "up": (None, 0.22), "down": (None, 0.78),
}

# Motion verbs (lemma) -> default direction (dx, dy) in units of the frame, or a special motion.
MOTION_VERBS = {
    "fall": (0, 1), "drop": (0, 1), "sink": (0, 1), "descend": (0, 1), "land": (0, 1),
    "rise": (0, -1), "ascend": (0, -1), "climb": (0, -1), "float": (0, -1), "lift": (0, -1),
    "fly": (1, -1), "soar": (1, -1),
    "roll": (1, 0), "slide": (1, 0), "move": (1, 0), "drift": (1, 0), "glide": (1, 0), "travel": (1, 0),
    "walk": (1, 0), "run": (1, 0), "ride": (1, 0), "drive": (1, 0), "swim": (1, 0), "go": (1, 0), "cross": (1, 0),
    "come": (-1, 0), "head": (1, 0), "race": (1, 0), "dash": (1, 0), "hop": (1, 0), "crawl": (1, 0),
}
BOUNCE_VERBS = {"bounce", "jump", "leap", "hop", "dance"}
GROW_VERBS = {"grow", "expand", "enlarge", "inflate", "swell"}
SHRINK_VERBS = {"shrink", "contract", "deflate", "dwindle"}
APPEAR_VERBS = {"appear", "emerge", "enter", "arrive", "pop"}
DISAPPEAR_VERBS = {"disappear", "vanish", "leave", "exit", "fade"}
COLOR_VERBS = {"turn", "become", "change"}
STATIC_VERBS = {"be", "sit", "stand", "lie", "rest", "wait", "stay", "remain", "hang", "float_still"}

ALL_ACTION_LEMMAS = (
    set(MOTION_VERBS) | BOUNCE_VERBS | GROW_VERBS | SHRINK_VERBS | APPEAR_VERBS | DISAPPEAR_VERBS | COLOR_VERBS | STATIC_VERBS
)
# Surface forms spaCy's small model sometimes tags as nouns ("rolls", "slides", "move").
ACTION_SURFACE = {
    f for lemma in ALL_ACTION_LEMMAS for f in (lemma, lemma + "s", lemma + "es", lemma + "ing", lemma + "ed", lemma + "d")
} | {"fell", "rose", "flew", "flies", "ran", "rode", "drove", "swam", "went", "came", "grew", "sat", "stood", "lay", "is", "are", "was", "were", "left"}
IRREGULAR_LEMMAS = {
    "fell": "fall", "rose": "rise", "flew": "fly", "flies": "fly", "ran": "run", "rode": "ride", "drove": "drive",
    "swam": "swim", "went": "go", "came": "come", "grew": "grow", "sat": "sit", "stood": "stand", "lay": "lie",
    "is": "be", "are": "be", "was": "be", "were": "be", "rises": "rise", "slides": "slide", "moves": "move",
    "bounces": "bounce", "dances": "dance", "shrinks": "shrink", "vanishes": "vanish", "disappears": "disappear",
    "appears": "appear", "drifts": "drift", "rolls": "roll", "falls": "fall", "turns": "turn", "glides": "glide",
}

# Connectives that order clauses in time.
SEQUENTIAL = {"then", "next", "afterwards", "afterward", "finally", "later", "eventually"}
CONCURRENT = {"while", "as", "meanwhile", "simultaneously"}

NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "2": 2, "3": 3, "4": 4, "5": 5, "a pair of": 2}

# Rough box shapes (width, height) by kind of thing, for open-domain nouns.
PERSON_NOUNS = {
    "man", "woman", "lady", "boy", "girl", "person", "people", "chef", "businesswoman", "businessman", "friend",
    "customer", "child", "kid", "player", "dancer", "santa", "claus", "worker", "student", "teacher", "doctor",
}
VEHICLE_NOUNS = {"car", "motorcycle", "bike", "bicycle", "bus", "truck", "train", "boat", "ship", "plane", "horse"}
