"""Question-answer pairs the project writes itself: templated facts, arithmetic and word tasks.

Every task is one niche of the `text_qa` environment. A task is a table of facts (slot values and
the answer) and five question templates; a question is a template filled with a fact. Nothing is
downloaded: the tables below are the whole data set.

`TASKS` keeps a fixed order, so `environment.niches: K` means the first K tasks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    templates: tuple[str, ...]  # str.format templates over the fact's slots
    facts: tuple[tuple[dict[str, str], str], ...]  # (slots, answer)


def _pairs(table: str) -> list[tuple[str, str]]:
    """'a:b, c:d' -> [('a', 'b'), ('c', 'd')]."""
    return [tuple(p.strip() for p in item.split(":")) for item in table.split(",") if item.strip()]


CAPITALS = _pairs(
    "France:Paris, Germany:Berlin, Italy:Rome, Spain:Madrid, Portugal:Lisbon, Greece:Athens,"
    "Poland:Warsaw, Austria:Vienna, Hungary:Budapest, Sweden:Stockholm, Norway:Oslo, Finland:Helsinki,"
    "Denmark:Copenhagen, Ireland:Dublin, Egypt:Cairo, Kenya:Nairobi, Japan:Tokyo, China:Beijing,"
    "Russia:Moscow, Peru:Lima, Chile:Santiago, Argentina:Buenos Aires, Canada:Ottawa, Mexico:Mexico City,"
    "Cuba:Havana, Thailand:Bangkok, Vietnam:Hanoi, Iran:Tehran, Iraq:Baghdad, Turkey:Ankara"
)
OPPOSITES = _pairs(
    "hot:cold, big:small, up:down, early:late, happy:sad, light:dark, fast:slow, open:closed,"
    "full:empty, strong:weak, rich:poor, old:young, hard:soft, wet:dry, loud:quiet, high:low,"
    "push:pull, win:lose, buy:sell, friend:enemy, day:night, north:south, east:west, begin:end,"
    "love:hate, thick:thin, deep:shallow, cheap:expensive, clean:dirty, true:false"
)
SOUNDS = _pairs(
    "cow:moo, dog:woof, cat:meow, duck:quack, sheep:baa, pig:oink, horse:neigh, lion:roar,"
    "owl:hoot, snake:hiss, bee:buzz, mouse:squeak, frog:croak, crow:caw, donkey:bray, wolf:howl,"
    "goat:bleat, rooster:crow, turkey:gobble, dove:coo"
)
WORDS = [
    "apple", "banana", "cherry", "garden", "river", "mountain", "window", "pencil", "rocket",
    "silver", "orange", "violet", "yellow", "kitchen", "planet", "zebra", "island", "jacket",
    "lemon", "market", "nature", "ocean", "queen", "tiger", "umbrella", "wagon", "basket",
    "dragon", "engine", "forest", "harbor",
]
PLURALS = _pairs(
    "mouse:mice, child:children, man:men, woman:women, tooth:teeth, foot:feet, goose:geese,"
    "person:people, box:boxes, city:cities, baby:babies, knife:knives, leaf:leaves, wolf:wolves,"
    "bus:buses, hero:heroes, potato:potatoes, cactus:cacti, fish:fish, ox:oxen, wife:wives,"
    "story:stories, church:churches, dish:dishes"
)
COLORS = _pairs(
    "the sky:blue, grass:green, snow:white, coal:black, a banana:yellow, blood:red, a lemon:yellow,"
    "the sea:blue, a carrot:orange, milk:white, a leaf:green, a ruby:red, the night:black,"
    "an orange:orange, a tomato:red, a lime:green, chocolate:brown, soil:brown, a plum:purple,"
    "an emerald:green, a sapphire:blue, ivory:white, soot:black, wheat:yellow"
)
UNITS = (  # (from, to, factor)
    ("meters", "centimeters", 100), ("kilograms", "grams", 1000), ("hours", "minutes", 60),
    ("minutes", "seconds", 60), ("feet", "inches", 12), ("days", "hours", 24), ("weeks", "days", 7),
    ("yards", "feet", 3),
)


def _build() -> tuple[Task, ...]:
    capitals = Task("capitals", (
        "What is the capital of {x}?", "Which city is the capital of {x}?", "Name the capital city of {x}.",
        "{x} has which city as its capital?", "Tell me the capital of {x}.",
    ), tuple(({"x": c}, a) for c, a in CAPITALS))
    sums = Task("sums", (
        "What is {a} plus {b}?", "What is {a} + {b}?", "Add {a} and {b}.", "How much is {a} plus {b}?",
        "Compute the sum of {a} and {b}.",
    ), tuple(({"a": str(a), "b": str(b)}, str(a + b)) for a in range(1, 13) for b in range(1, 13)))
    units = Task("units", (
        "How many {to} are in {n} {frm}?", "Convert {n} {frm} to {to}.", "{n} {frm} is how many {to}?",
        "What is {n} {frm} in {to}?", "Express {n} {frm} in {to}.",
    ), tuple(({"n": str(n), "frm": f, "to": t}, f"{n * k} {t}") for f, t, k in UNITS for n in range(2, 10)))
    opposites = Task("opposites", (
        "What is the opposite of {x}?", "Give the antonym of {x}.", "What word means the opposite of {x}?",
        "The opposite of {x} is what?", "Name a word opposite in meaning to {x}.",
    ), tuple(({"x": w}, a) for w, a in OPPOSITES))
    sounds = Task("animal_sounds", (
        "What sound does a {x} make?", "Which noise does a {x} make?", "A {x} says what?",
        "How does a {x} sound?", "What does a {x} say?",
    ), tuple(({"x": w}, a) for w, a in SOUNDS))
    letters = Task("first_letter", (
        "What is the first letter of {x}?", "Which letter does {x} start with?", "{x} begins with which letter?",
        "Name the first letter of {x}.", "Give the initial letter of the word {x}.",
    ), tuple(({"x": w}, w[0].upper()) for w in WORDS))
    plurals = Task("plurals", (
        "What is the plural of {x}?", "Give the plural form of {x}.", "One {x}, two what?",
        "How do you say more than one {x}?", "What is the plural of the word {x}?",
    ), tuple(({"x": w}, a) for w, a in PLURALS))
    colors = Task("colors", (
        "What color is {x}?", "Which colour is {x}?", "Name the color of {x}.", "{x} is what color?",
        "Tell me the colour of {x}.",
    ), tuple(({"x": w}, a) for w, a in COLORS))
    return (capitals, sums, units, opposites, sounds, letters, plurals, colors)


TASKS: tuple[Task, ...] = _build()
TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)


def question(task: Task, template: int, fact: int) -> str:
    """The question of `fact` phrased by `template`, first letter capitalised."""
    text = task.templates[template].format(**task.facts[fact][0])
    return text[0].upper() + text[1:]
