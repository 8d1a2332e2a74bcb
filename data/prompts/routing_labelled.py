"""Build routing_labelled.csv: PartiPrompts labelled with a content type, for fitting and measuring routers.

Run from the repository root: ``python data/prompts/routing_labelled.py``. The rules, in priority order:

1. artistic      an art medium or style is named (painting, drawing, cartoon, watercolor, ...), or the
                 prompt is from the Arts category;
2. character     the People category (people, figures, groups), unless rule 1 applies;
3. architectural Indoor Scenes, or a building, room or built structure in a scene or landmark prompt;
4. photorealistic a photograph is asked for, or a plain real-world subject (animals, vehicles, food,
                 plants, outdoor scenes) without any style.

Prompts that fit none (abstract words, writing, geometry) are left out, and so are the ones listed in
EXCLUDED after reading the output by hand (mixed or misleading content). Related prompts (the same
subject in different styles, "a painting of a house on a mountain" / "a photograph of ...") share a
group, and a whole group goes to one split, so the held-out prompts are unlike the training ones.
"""

import csv
import hashlib
import re
from pathlib import Path

HERE = Path(__file__).parent
ART = re.compile(
    r"\b(painting|painted|drawing|drawn|cartoon|comic|anime|manga|watercolou?r|oil|sketch|illustration|"
    r"graffiti|mosaic|stained glass|pixel art|vector|poster|sculpture|statue|origami|woodcut|ukiyo|impressionist|"
    r"cubis[mt]|surreal|abstract|style of|in the style|van gogh|monet|picasso|dali|rembrandt|vermeer|"
    r"art|artwork|pencil|crayon|charcoal|pastel|doodle|emoji|icon|logo|clip art|storybook|baroque)\b",
    re.I,
)
BUILT = re.compile(
    r"\b(house|houses|building|buildings|skyscraper|tower|castle|cathedral|church|temple|pyramid|bridge|"
    r"palace|mansion|cabin|cottage|barn|lighthouse|room|kitchen|bathroom|bedroom|living room|library|"
    r"restaurant|interior|hallway|staircase|facade|architecture|skyline|city|street|dome|store front|"
    r"opera house|taj mahal|eiffel|colosseum|great wall|stonehenge|parthenon|monument|museum)\b",
    re.I,
)
PHOTO = re.compile(r"\b(photo|photograph|photographs|dslr|photorealistic|realistic|close-up|closeup|shot)\b", re.I)
PLACES = {"Indoor Scenes", "Outdoor Scenes", "World Knowledge", "Artifacts"}  # where a building can be the subject
REAL_WORLD = {"Animals", "Vehicles", "Food & Beverage", "Produce & Plants", "Outdoor Scenes"}
PLAIN_CHALLENGES = {"Basic", "Simple Detail", "Fine-grained Detail", "Complex", "Perspective"}
STYLE_PREFIX = re.compile(r"^.*?\b(of|about)\s+", re.I)

EXCLUDED = {
    "a room",  # too little to route on
    "a ceiling fan with five brown blades",
    "a grand piano with a white bench",
    "a coffee table with a magazine on it",
    "a bunch of laptops piled on a sofa",
    "a piano with Christmas lights all over it",
    "a ceiling fan",
    "a ceiling fan with an ornate light fixture",
    "red and yellow balloons hanging from a ceiling fan",
    "a large present with a red ribbon to the left of a Christmas tree",
    "a cloud in the shape of a castle",
    "The frog found itself in the newspaper",
    # read by hand: a creature or a vehicle is the subject, the building only its setting
    "A teddy bear wearing a motorcycle helmet and cape is standing in front of Loch Awe with Kilchurn Castle "
    "behind him",
    "A teddy bear wearing a motorcycle helmet and cape is driving a speed boat near the Golden Gate Bridge",
    "A teddy bear wearing a motorcycle helmet and cape is car surfing on a taxi cab in New York City",
    "a whale breaching in front of the Sydney Opera House",
    "an F1 race car in a Manhattan street",
    "a prop plane flying low over the Great Wall",
    "a gorilla climbing up the side of the Great Pyramid",
    "a beat-up truck at the base of the Great Pyramid",
    "a massive robot with a coffee cup head. it is standing in the street with one foot smashing a car.",
    "A large city fountain that has milk instead of water. Several cats are leaning into the fountain.",
    "a giant gorilla at the top of the Empire State Building",
    "a small kitchen with a white goat in it",
    "a tornado with a house carried along at its top",
    "an elephant walking on the Great Wall",
    "a spaceship landing on the Great Wall",
    "a dragon perched on top of the Great Pyramid",
    "a robot cooking in the kitchen",
    "An empty fireplace with a television above it. The TV shows a lion hugging a giraffe.",
    "three violins lying on the floor",
    "a ceiling fan with four white blades",
    "two pianos next to each other",
    "a piano with an open song book above the keys",
    "a yellow wall with two framed sketches",
    "A castle made of cardboard.",
    "a futuristic city in synthwave style",
    "A high resolution photo of a donkey in a clown costume giving a lecture at the front of a lecture hall. "
    "The blackboard has mathematical equations on it. There are many students in the lecture hall.",
}
NOT_A_SCENE = re.compile(r"\b(diagram|map|satellite image|blueprint)\b", re.I)  # a chart, not a view


def label(prompt: str, category: str, challenge: str) -> str | None:
    if (
        prompt in EXCLUDED
        or NOT_A_SCENE.search(prompt)
        or category in {"Abstract", "Writing & Symbols"}
        or challenge == "Writing & Symbols"
    ):
        return None
    if category == "Arts" or ART.search(prompt):
        return "artistic"
    if category == "People":
        return "character"
    if category == "Indoor Scenes" or (category in PLACES and BUILT.search(prompt)):
        return "architectural"
    if PHOTO.search(prompt) or (category in REAL_WORLD and challenge in PLAIN_CHALLENGES):
        return "photorealistic"
    return None


def group(prompt: str) -> str:
    """Prompts about the same subject share a group: drop a leading "a painting of"-style phrase."""
    subject = prompt.lower()
    if re.match(
        r"^(an? |the )?[\w\s-]{0,40}?\b(painting|photograph|photo|drawing|cartoon|sketch|image|picture|"
        r"illustration|portrait|comic|close-up|graffiti|sculpture)\b",
        subject,
    ):
        subject = STYLE_PREFIX.sub("", subject, count=1)
    return " ".join(re.findall(r"[a-z]+", subject)[:4])


def main() -> None:
    with open(HERE / "partiprompts" / "PartiPrompts.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = []
    for row in rows:
        prompt = " ".join(row["Prompt"].split())
        content = label(prompt, row["Category"], row["Challenge"])
        if content is None:
            continue
        bucket = int(hashlib.sha256(group(prompt).encode()).hexdigest(), 16) % 10
        out.append(
            {
                "prompt": prompt,
                "label": content,
                "split": "test" if bucket < 3 else "train",
                "source_category": row["Category"],
            }
        )
    with open(HERE / "routing_labelled.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["prompt", "label", "split", "source_category"])
        writer.writeheader()
        writer.writerows(out)


if __name__ == "__main__":
    main()
